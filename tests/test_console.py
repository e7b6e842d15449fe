"""``msad.console``: consoles that never wrap a log, the loop progress of evaluation and prediction."""

from __future__ import annotations

import io
import math
import re

import pytest
from rich.console import Console

from msad import console as msad_console
from msad.console import LiveLines, LoopProgress, format_metric, make_console, plural, progress_text


def test_console_off_a_terminal_writes_long_lines_whole(capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    path = "runs/" + "a-very-long-folder-name/" * 6 + "last.safetensors"
    make_console().print(f"weights: {path}")
    assert capsys.readouterr().out == f"weights: {path}\n"  # rich's default console breaks this at 80 columns


def test_loop_progress_writes_plain_timestamped_lines_and_a_closing_rate() -> None:
    lines: list[str] = []
    with LoopProgress("eval", total=3, live=False, echo=lines.append, every_s=0.0) as progress:
        progress.advance(2)
        progress.advance(2)  # never past the total
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  "
    assert re.fullmatch(stamp + r"eval  2/3  elapsed \d+:\d\d  eta \d+:\d\d  .* images/s", lines[0])
    assert re.fullmatch(stamp + r"eval: 3 images in \d+:\d\d \(.* images/s\)", lines[-1]) and len(lines) == 3


def test_loop_progress_of_one_image_says_image() -> None:
    lines: list[str] = []
    with LoopProgress("predict", total=1, live=False, echo=lines.append) as progress:
        progress.advance(1)
    assert ": 1 image in " in lines[-1]
    assert (plural(1, "image"), plural(0, "image"), plural(2, "image")) == ("1 image", "0 images", "2 images")


def test_loop_progress_stays_silent_when_disabled_or_failed() -> None:
    lines: list[str] = []
    with LoopProgress("eval", total=3, live=False, echo=lines.append, enabled=False) as progress:
        progress.advance(3)
    with pytest.raises(RuntimeError), LoopProgress("eval", total=3, live=False, echo=lines.append):
        raise RuntimeError("stopped")
    assert lines == []


@pytest.mark.parametrize("width", [40, 80, 200])
def test_progress_lines_keep_count_and_eta_and_fit_the_width(width: int) -> None:
    def render(w: int):
        return progress_text(label="predict", done=7, total=120, elapsed=75.0, eta=1210.0, rate="3.5 images/s",
                             status="x" * 300, width=w)

    out = Console(width=width, file=io.StringIO(), force_terminal=True, color_system=None)
    out.print(LiveLines(render))
    lines = out.file.getvalue().splitlines()
    assert "7/120" in lines[0] and "1:15<20:10" in lines[0]
    assert all(len(line) <= width for line in lines) and lines[-1].endswith("…")


@pytest.mark.parametrize(("value", "text"), [(12.345, "12.35"), (0, "0.00"), (math.nan, "–"), (None, "–"),
                                             (math.inf, "–"), ("0.25x", "0.25x")])
def test_format_metric(value: object, text: str) -> None:
    assert format_metric(value) == text


def test_undefined_metrics_read_the_same_everywhere() -> None:
    assert [format_metric(v) for v in (float("nan"), None, 12.345, 3)] == ["–", "–", "12.35", "3.00"]
    assert msad_console.format_duration(3725) == "1:02:05" and msad_console.format_duration(None) == "-:--"


def test_the_callback_form_counts_the_rate_from_the_loops_start(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("msad.console.time.perf_counter", lambda: now[0])
    lines: list[str] = []
    with LoopProgress("predict", live=False, echo=lines.append) as progress:
        now[0] = 100.0  # loading the model took 100 s
        progress.update(0, 4)  # the loop starts
        now[0] = 102.0
        progress.update(4, 4)
    assert lines[-1].endswith("predict: 4 images in 0:02 (2 images/s)")
