"""What a person watching msad sees: consoles that never hard-wrap a log, fixed-column progress lines, and one
progress helper for every loop over images (evaluation, prediction).

On a terminal a progress display is a live line redrawn a few times a second; anywhere else (a file, a pipe,
``CI=true``) it is plain timestamped lines, so a log reads well and greps well. A progress line keeps its
columns in a fixed order and never squeezes them: the label, the bar, ``done/total``, elapsed and ETA come first,
and whatever does not fit the width after them (the losses) goes to a second line (live) or is cut with "…".
Nothing here imports torch.
"""

from __future__ import annotations

import datetime
import math
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

__all__ = [
    "on_terminal", "make_console", "timestamped", "plural", "format_duration", "format_metric", "rate_text",
    "progress_text", "LiveLines", "LoopProgress",
]

#: Live redraws per second (a bounded refresh rate, whatever the step rate).
REFRESH_PER_SECOND = 4
#: Bar width bounds (characters).
_BAR_MIN, _BAR_MAX = 10, 30


def on_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (stdout by default) is a terminal and this is not ``CI=true``: live displays only then."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("CI", "").lower() not in ("true", "1")


def make_console(*, stderr: bool = False) -> Console:
    """A rich console for the CLI's output; off a terminal it never wraps a line (logs stay greppable).

    On a terminal rich uses the terminal's width. Anywhere else long lines are written whole (``soft_wrap``) and
    tables get ``COLUMNS`` or 200 columns instead of rich's 80.
    """
    if on_terminal(sys.stderr if stderr else sys.stdout):
        return Console(stderr=stderr)
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 200
    return Console(stderr=stderr, soft_wrap=True, width=width)


def timestamped(text: str) -> str:
    """``text`` after the local date and time, for a plain log line."""
    return f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}  {text}"


def plural(count: int, noun: str) -> str:
    """``"1 image"``, ``"2 images"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_duration(seconds: float | None) -> str:
    """``H:MM:SS`` (``M:SS`` under an hour); ``-:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_metric(value: Any) -> str:
    """A metric for a person: two decimals, or "–" when it is undefined (None or NaN, e.g. APl without large
    objects). Every place that shows an evaluation metric (tables, the training log) writes it this way."""
    if isinstance(value, bool) or not isinstance(value, float | int):
        return "–" if value is None else str(value)
    return f"{value:.2f}" if math.isfinite(value) else "–"


def rate_text(per_second: float | None, unit: str) -> str:
    """``"12.3 images/s"``, or ``"4.1 s/it"`` for a slow iteration rate; ``""`` when unknown."""
    if per_second is None or not math.isfinite(per_second) or per_second <= 0:
        return ""
    if unit == "it" and per_second < 1:
        return f"{1 / per_second:.2f} s/it"
    return f"{per_second:.3g} {unit}/s" if per_second < 100 else f"{per_second:.0f} {unit}/s"


def _bar(done: int, total: int | None, width: int) -> Text:
    """A bar of ``width`` characters, filled in proportion to ``done / total``."""
    text = Text()
    if not total:
        return text.append("─" * width, style="bar.back")
    filled = min(width, int(width * done / total))
    text.append("━" * filled, style="bar.finished" if done >= total else "bar.complete")
    return text.append("─" * (width - filled), style="bar.back")


def progress_text(
    *, label: str, done: int, total: int | None, elapsed: float, eta: float | None, rate: str = "",
    status: str = "", width: int = 80, bar: bool = True,
) -> list[Text]:
    """The lines of one progress display, ``width`` characters at most each.

    The first line is ``label  bar  done/total  elapsed<eta  rate`` (the bar takes 10–30 characters, the rest
    never shrinks); ``status`` follows on the same line when it fits whole, else on a second line, cut with
    "…" only when it is wider than the whole width. ``bar=False`` gives one plain log line, whatever its
    length: ``label  done/total  elapsed …  eta …  rate  status``.
    """
    count = f"{done}/{total}" if total else str(done)
    times = f"{format_duration(elapsed)}<{format_duration(eta)}"
    if not bar:  # a plain log line: words, not a bar
        parts = [label, count, f"elapsed {format_duration(elapsed)}", f"eta {format_duration(eta)}", rate, status]
        return [Text("  ".join(part for part in parts if part))]
    head = [label, count, times] + ([rate] if rate else [])
    fixed = sum(len(part) for part in head) + 2 * len(head)  # two spaces between parts
    first = Text(label, style="bold")
    first.append("  ").append_text(_bar(done, total, max(_BAR_MIN, min(_BAR_MAX, width - fixed))))
    first.append(f"  {count}  ").append(format_duration(elapsed), style="progress.elapsed")
    first.append("<").append(format_duration(eta), style="progress.remaining")
    if rate:
        first.append(f"  {rate}")
    if not status:
        return [first]
    if first.cell_len + 2 + len(status) <= width:
        return [first.append(f"  {status}")]
    second = Text("  " + status, no_wrap=True, overflow="ellipsis")
    second.truncate(width, overflow="ellipsis")
    return [first, second]


class LiveLines:
    """The renderable a rich ``Live`` redraws: ``render(width) -> lines``, laid out at the console's width."""

    def __init__(self, render: Callable[[int], list[Text]]) -> None:
        self.render = render

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.render(options.max_width):
            line.no_wrap, line.overflow = True, "ellipsis"
            yield line


class LoopProgress:
    """Progress of a loop over items (images): a live line on a terminal, plain timestamped lines otherwise.

    Shows ``done/total``, a bar, elapsed, ETA and the rate (``images/s``); off a terminal a line every
    ``every_s`` seconds, and in both cases a closing line with the count, the time and the rate.
    Use as a context manager; ``enabled=False`` (ranks other than 0) shows nothing.

    Args:
        label: what the loop is (``"eval"``, ``"predict"``).
        total: items expected (``None`` until :meth:`set_total`).
        unit: the items' noun (``"image"``), pluralised as needed.
        enabled: show anything at all.
        live: live display (default: stderr is a terminal).
        echo: where plain lines go (default: stderr).
        every_s: seconds between plain lines.
    """

    def __init__(
        self, label: str, *, total: int | None = None, unit: str = "image", enabled: bool = True,
        live: bool | None = None, echo: Callable[[str], None] | None = None, every_s: float = 30.0,
    ) -> None:
        self.label, self.total, self.unit, self.enabled, self.every_s = label, total, unit, enabled, every_s
        self.echo = echo or (lambda text: print(text, file=sys.stderr, flush=True))
        self.done = 0
        self.started = self._last_line = time.perf_counter()
        self._live = None
        if enabled and (on_terminal(sys.stderr) if live is None else live):
            from rich.live import Live

            self._live = Live(LiveLines(self.render), console=Console(stderr=True), transient=True,
                              refresh_per_second=REFRESH_PER_SECOND, redirect_stdout=False, redirect_stderr=False)
            self._live.start()

    def __enter__(self) -> LoopProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close(finished=kind is None)

    def set_total(self, total: int | None) -> None:
        """Set (or change) how many items are expected."""
        self.total = total

    def advance(self, count: int = 1) -> None:
        """``count`` more items are done, at most ``total`` (cheap: no output unless a plain line is due)."""
        self.done = self.done + count if self.total is None else min(self.total, self.done + count)
        if self.enabled and self._live is None and time.perf_counter() - self._last_line >= self.every_s:
            self._last_line = time.perf_counter()
            self.echo(timestamped(self.render(10_000, bar=False)[0].plain))

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` items are done in all, of ``total`` (when given): the callback form of :meth:`advance`.
        ``update(0, total)`` before any item restarts the clock (the loop starts now: set-up is not in the rate)."""
        if total is not None:
            self.total = total
        if done == 0 and self.done == 0:
            self.started = self._last_line = time.perf_counter()
        self.advance(done - self.done)

    def rate(self) -> float | None:
        """Items per second so far."""
        seconds = time.perf_counter() - self.started
        return self.done / seconds if self.done and seconds > 0 else None

    def render(self, width: int, *, bar: bool = True) -> list[Text]:
        """The display's lines at ``width`` columns."""
        rate = self.rate()
        eta = (self.total - self.done) / rate if rate and self.total else None
        return progress_text(label=self.label, done=self.done, total=self.total, elapsed=time.perf_counter() - self.started,
                             eta=eta, rate=rate_text(rate, self.unit + "s"), width=width, bar=bar)

    def close(self, *, finished: bool = True) -> None:
        """Stop the live line and, when the loop finished, write the closing line (once)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self.enabled and finished:
            self.enabled = False
            seconds = time.perf_counter() - self.started
            rate = rate_text(self.rate(), self.unit + "s")
            self.echo(timestamped(f"{self.label}: {plural(self.done, self.unit)} in {format_duration(seconds)}"
                                  + (f" ({rate})" if rate else "")))
