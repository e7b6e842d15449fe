"""Rank 0's training display: a live line in fixed columns on a terminal, plain timestamped lines otherwise.

The display is updated every iteration (:meth:`Progress.step`: an integer and a clock, no tensor value) and redrawn
at most :data:`msad.console.REFRESH_PER_SECOND` times a second; the losses it shows are the means over the last
logging window (:meth:`Progress.update`, called when the trainer brings the values to the host every
``run.log_period`` iterations), the same numbers and names as the ``train`` records of ``metrics.jsonl``.

Layout (one line when it fits, else the losses on a second line)::

    teacher  ━━━━━━━━━━━━──────  120/200  1:02<0:41  2.9 it/s  lr 0.02  loss 2.314 = hr 1.1 + lr 0.81 + fused 0.4

Only the learning rate, ``total_loss`` and a few sums of terms are shown: the losses grouped by branch prefix
(``hr_loss_cls`` … → ``hr``) when they have one, else each term without its ``loss_`` prefix (``cls``, ``box``,
``ctr``, ``kd``). Every term, ``kd_raw`` and the KD weights are in ``metrics.jsonl`` (and TensorBoard).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping

from msad.console import (
    REFRESH_PER_SECOND,
    LiveLines,
    format_duration,
    on_terminal,
    progress_text,
    rate_text,
    timestamped,
)

__all__ = ["Progress", "loss_summary"]


def loss_summary(stats: Mapping[str, float]) -> str:
    """``"lr 0.02  loss 2.314 = cls 1.1 + box 0.7 + ctr 0.6"``: the lr, ``total_loss`` and its terms in a few groups.

    A term ``{prefix}_loss_{name}`` adds to group ``prefix``; a term ``loss_{name}`` is group ``name``.
    """
    parts = []
    if "lr" in stats:
        parts.append(f"lr {stats['lr']:.3g}")
    groups: dict[str, float] = {}
    for key, value in stats.items():
        prefix, found, name = key.partition("loss_")
        if found and key != "total_loss":
            group = prefix.rstrip("_") or name
            groups[group] = groups.get(group, 0.0) + value
    if "total_loss" in stats:
        terms = " + ".join(f"{name} {value:.3g}" for name, value in groups.items())
        parts.append(f"loss {stats['total_loss']:.4g}" + (f" = {terms}" if len(groups) > 1 else ""))
    return "  ".join(parts)


class Progress:
    """Rank 0's progress of a training run.

    Args:
        total: the run's last iteration.
        start: completed iterations at start (resume).
        log_period: iterations between plain lines.
        enabled: ``False`` on ranks other than 0.
        rich: live display (default: stdout is a terminal and not ``CI=true``).
        echo: where plain lines go.
        label: what runs (the role, e.g. ``teacher``).
        batch_size: images per iteration (global), for ``images/s``.
    """

    def __init__(
        self, *, total: int, start: int, log_period: int, enabled: bool = True, rich: bool | None = None,
        echo: Callable[[str], None] = print, label: str = "train", batch_size: int | None = None,
    ) -> None:
        self.total, self.start, self.log_period, self.echo = total, start, log_period, echo
        self.enabled, self.label, self.batch_size = enabled, label, batch_size
        self.started = time.perf_counter()
        self.done = start
        self.status = ""
        self._first: tuple[int, float] | None = None  # (iteration, clock) after the first step: the rate excludes it
        self._paused = 0.0  # seconds spent in evaluations, left out of the rate
        self._live = None
        self._use_live = enabled and (on_terminal(sys.stdout) if rich is None else rich)
        if self._use_live:
            self._start_live()

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._live = Live(LiveLines(self.render), console=Console(), refresh_per_second=REFRESH_PER_SECOND)
        self._live.start()

    # ------------------------------------------------------------------ state
    def step(self, iteration: int) -> None:
        """``iteration`` iterations are complete (every step; cheap: the live line redraws on its own clock)."""
        self.done = iteration
        if self._first is None:
            self._first = (iteration, time.perf_counter())
            if self.enabled and self._live is None:
                seconds = time.perf_counter() - self.started
                self.echo(timestamped(f"{self.label}  {iteration}/{self.total}  first iteration done after "
                                      f"{format_duration(seconds)} (start-up included); next line at iteration "
                                      f"{min(self.total, (iteration // self.log_period + 1) * self.log_period)}"))

    def update(self, iteration: int, stats: Mapping[str, float]) -> None:
        """The window means of iteration ``iteration`` (lr, losses): shown until the next update; a plain line."""
        self.done = iteration
        self.status = loss_summary(stats)
        if self.enabled and self._live is None:
            self.echo(timestamped(self.render(10_000, bar=False)[0].plain))

    def iterations_per_s(self) -> float | None:
        """Iterations per second since the first step, evaluations left out."""
        if self._first is None or self.done <= self._first[0]:
            return None
        seconds = time.perf_counter() - self._first[1] - self._paused
        return (self.done - self._first[0]) / seconds if seconds > 0 else None

    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate (``None`` before the second step)."""
        rate = self.iterations_per_s()
        return (self.total - self.done) / rate if rate else None

    def eta(self, iteration: int | None = None) -> str:
        """Estimated time left, ``H:MM:SS``."""
        return format_duration(self.eta_seconds())

    def render(self, width: int, *, bar: bool = True) -> list:
        """The display's lines at ``width`` columns."""
        rate = self.iterations_per_s()
        text = rate_text(rate, "it")
        if rate and self.batch_size:
            text += f"  {rate_text(rate * self.batch_size, 'img')}"
        return progress_text(label=self.label, done=self.done, total=self.total, elapsed=time.perf_counter() - self.started,
                             eta=self.eta_seconds(), rate=text, status=self.status, width=width, bar=bar)

    # ------------------------------------------------------------------ output
    def message(self, text: str) -> None:
        """Print a line above the live display (or plainly)."""
        if not self.enabled:
            return
        if self._live is not None:
            self._live.console.print(text, soft_wrap=True)
        else:
            self.echo(timestamped(text))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the live line (e.g. while an evaluation shows its own) and leave the time out of the rate."""
        began = time.perf_counter()
        live = self._live is not None
        if live:
            self._live.stop()
            self._live = None
        try:
            yield
        finally:
            self._paused += time.perf_counter() - began
            if live and self.done < self.total:  # after the final evaluation the last line stays as it is
                self._start_live()

    def close(self) -> None:
        """Stop the live line (its last state stays on the screen)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
