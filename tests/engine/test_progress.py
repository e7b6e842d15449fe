"""The training display: fixed columns at any width, window means, plain timestamped lines off a terminal."""

from __future__ import annotations

import io
import re

import pytest
import toytask
from rich.console import Console

from msad.console import LiveLines
from msad.engine import Trainer
from msad.engine.metrics import read_metrics
from msad.engine.progress import Progress, loss_summary

#: The teacher's twelve logged terms (three branches × four), the case that squeezed the old bar to "t…".
TEACHER_STATS = {f"{b}_loss_{t}": 0.25 for b in ("hr", "lr", "fused") for t in ("cls", "box", "ctr", "iou")} | {
    "total_loss": 3.0, "lr": 0.02}


def rendered(progress: Progress, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), force_terminal=True, color_system=None)
    console.print(LiveLines(progress.render))
    return console.file.getvalue()


@pytest.mark.parametrize("width", [80, 200])
def test_bar_count_and_eta_stay_visible_at_any_width(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("msad.engine.progress.time.perf_counter", lambda: now[0])
    progress = Progress(total=200, start=0, log_period=10, rich=False, echo=lambda _: None, label="teacher", batch_size=8)
    now[0] = 10.0
    progress.step(1)  # the first step (start-up) is left out of the rate
    now[0] = 129.0
    progress.step(120)
    progress.update(120, TEACHER_STATS)
    text = rendered(progress, width)
    lines = text.splitlines()
    # 119 iterations in 119 s: 80 left take 80 s; 2:09 elapsed
    assert "120/200" in lines[0] and "━" in lines[0] and "2:09<1:20" in lines[0] and progress.eta() == "1:20"
    assert all(len(line) <= width for line in lines)
    assert "loss 3 = hr 1 + lr 1 + fused 1" in text  # the losses, grouped by branch, on the line or the next
    assert len(lines) == (1 if width == 200 else 2)


def test_loss_summary_groups_terms_by_branch_or_name() -> None:
    assert loss_summary(TEACHER_STATS) == "lr 0.02  loss 3 = hr 1 + lr 1 + fused 1"
    student = {"lr": 0.01, "loss_cls": 1.0, "loss_box": 0.5, "loss_ctr": 0.5, "loss_kd": 2.0, "total_loss": 4.0, "kd_raw": 9.0}
    assert loss_summary(student) == "lr 0.01  loss 4 = cls 1 + box 0.5 + ctr 0.5 + kd 2"


def test_plain_lines_show_the_window_means_of_metrics_jsonl(tmp_path) -> None:
    """Off a terminal: a first line after the first step, then one timestamped line per logging window holding
    the same ``total_loss`` as the window's ``metrics.jsonl`` record (not the last iteration's)."""
    lines: list[str] = []
    solver, run = toytask.settings(tmp_path, iters=6, eval_period=0)
    trainer = Trainer(toytask.ToyTask(noise=1.0), solver=solver, run=run, echo=lines.append,
                      make_train_loader=toytask.make_loader(3, solver.batch_size))
    trainer.fit()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  "
    assert re.match(stamp + r"toy → .*6 iterations of batch", lines[0])  # the start banner
    assert re.match(stamp + r"toy  1/6  first iteration done", lines[1])
    train = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["type"] == "train"]
    shown = [line for line in lines if re.match(stamp + r"toy  \d+/6  elapsed", line)]
    assert len(shown) == len(train) == 3
    for line, record in zip(shown, train, strict=True):
        assert f"{record['iteration']}/6" in line and f"loss {record['total_loss']:.4g} " in line
        assert "eta " in line and "\n" not in line


def test_the_tasks_window_warnings_are_shown_with_their_iteration(tmp_path) -> None:
    class Warned(toytask.ToyTask):
        def window_warnings(self, rows: list[dict[str, float]]) -> list[str]:
            assert len(rows) == 2 and all("loss_mse" in row for row in rows)  # each iteration of the window
            return ["mse is large"]

    lines: list[str] = []
    solver, run = toytask.settings(tmp_path, iters=4, eval_period=0)
    Trainer(Warned(), solver=solver, run=run, echo=lines.append,
            make_train_loader=toytask.make_loader(3, solver.batch_size)).fit()
    warned = [line for line in lines if "msad: warning" in line]
    assert [w.split("  ", 1)[1] for w in warned] == ["msad: warning (iteration 2): mse is large",
                                                     "msad: warning (iteration 4): mse is large"]
