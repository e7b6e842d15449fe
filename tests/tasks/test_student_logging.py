"""The student logs its distillation term before and after the ramp, under names that say what they are, and
says when its warm-up cannot finish or its KD term dominates."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from msad import api
from msad.api.training import _warn_unfinished_ramp
from msad.config import Recipe
from msad.tasks.student import StudentTask


def test_metrics_jsonl_holds_kd_raw_its_ramp_and_effective_weight(trained_student: api.TrainResult) -> None:
    rows = [json.loads(line) for line in (trained_student.output / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["type"] == "train"]
    # log_period 2, tiny.toml ramps over 50 iterations: the mean ramp of iterations {0, 1} and {2, 3}
    assert [r["kd_ramp"] for r in train] == pytest.approx([0.5 / 50, 2.5 / 50])
    assert [r["kd_weight_effective"] for r in train] == pytest.approx([0.5 / 50, 2.5 / 50])  # distill.kd_weight = 1
    assert all("kd_weight" not in r for r in train)  # the recipe's name is not reused for a different number
    for row in train:
        assert row["kd_raw"] > 0 and row["loss_kd"] < row["kd_raw"]
    assert (trained_student.output / "curves.png").is_file()


def test_a_ramp_longer_than_the_distillation_is_said_once(tiny_recipe: Recipe, capsys: pytest.CaptureFixture) -> None:
    _warn_unfinished_ramp(tiny_recipe.model_copy(update={"distill": tiny_recipe.distill.model_copy(update={"ramp_iters": 500})}))
    err = capsys.readouterr().err
    iters = tiny_recipe.solver_for("distill").iters
    assert err.startswith("msad: warning: distill.ramp_iters = 500") and f"the {iters} distillation iterations" in err
    assert f"ends at {(iters - 1) / 500:.2f} × distill.kd_weight" in err
    _warn_unfinished_ramp(tiny_recipe.model_copy(update={"distill": tiny_recipe.distill.model_copy(update={"ramp_iters": iters})}))
    assert capsys.readouterr().err == ""


def test_a_dominating_kd_term_is_said_once_per_run() -> None:
    task = SimpleNamespace(_kd_warned=False)
    warn = lambda rows: StudentTask.window_warnings(task, rows)  # noqa: E731
    row = {"loss_kd": 30.0, "total_loss": 32.0}  # KD 30 vs detection 2: 15×
    assert warn([row, row | {"loss_kd": 15.0, "total_loss": 17.0}]) == []  # 7.5× at one iteration: not the whole window
    said = warn([row, row])
    assert len(said) == 1 and "loss_kd, mean 30" in said[0] and "detection loss (mean 2)" in said[0]
    assert warn([row, row]) == []  # once
