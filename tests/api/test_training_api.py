"""The Python API end to end: train_teacher → distill → evaluate, and what the runs leave behind."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from msad import api
from msad.api.training import build_task
from msad.build import build_distill_loss, build_train_dataset
from msad.config import Recipe
from msad.errors import CheckpointError, UsageError
from msad.roles import get_role
from msad.tasks.detection import DetectionTask
from msad.tasks.student import StudentTask

RUN_FILES = ("last.safetensors", "metrics.jsonl", "curves.png", "recipe.toml", "environment.json")


def _same_metrics(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal metric dicts, NaN equal to NaN (APl is NaN when the val set has no large objects)."""
    return a.keys() == b.keys() and all(
        (math.isnan(x) and math.isnan(y)) if isinstance(x, float) and math.isnan(x) else x == y
        for x, y in ((a[k], b[k]) for k in a)
    )


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_runs_write_their_files_and_metadata(stage: str, request: pytest.FixtureRequest, tiny_recipe: Recipe) -> None:
    result: api.TrainResult = request.getfixturevalue(f"trained_{stage}")
    for name in RUN_FILES:
        assert (result.output / name).is_file(), f"{stage} run lacks {name}"
    assert result.weights == result.output / "last.safetensors"
    assert set(api.METRICS) <= set(result.metrics)
    # the metrics log holds the training losses of the logged iterations
    rows = [json.loads(line) for line in (result.output / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert any(row.get("iteration") == 4 for row in rows)

    ckpt = api.read_checkpoint(result.weights)
    assert ckpt.role == stage
    assert ckpt.width == 0.25
    assert json.loads(ckpt.metadata["width"]) == 0.25
    assert json.loads(ckpt.metadata["iteration"]) == 4
    val = json.loads(Path(tiny_recipe.data.val_annotations).read_text())
    cats = sorted(val["categories"], key=lambda c: c["id"])
    assert [cid for cid, _ in ckpt.label_space] == [c["id"] for c in cats]
    assert [name for _, name in ckpt.label_space] == [c["name"] for c in cats]
    assert json.loads(ckpt.metadata["classes"]) == [c["name"] for c in cats]
    assert json.loads(ckpt.metadata["category_ids"]) == [c["id"] for c in cats]
    assert ckpt.recipe == tiny_recipe.model_copy(update={"run": tiny_recipe.run.model_copy(update={"output": str(result.output)})})


def test_read_checkpoint_refuses_the_wrong_role(trained_student: api.TrainResult) -> None:
    with pytest.raises(CheckpointError, match="student.*expected a teacher"):
        api.read_checkpoint(trained_student.weights, role="teacher")


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_evaluate_reports_coco_metrics_and_is_deterministic(stage: str, request: pytest.FixtureRequest, easy_recipe: Recipe, tmp_path: Path) -> None:
    # the learned runs (clearly non-zero AP), so the comparisons below compare real numbers, not zeros
    result: api.TrainResult = request.getfixturevalue(f"learned_{stage}")
    first = api.evaluate(easy_recipe, result.weights, json_out=tmp_path / "m.json")
    second = api.evaluate(easy_recipe, result.weights)
    assert list(first["metrics"]) == list(api.METRICS) and first["metrics"]["AP"] > 1
    assert first["role"] == stage
    assert first["branch"] == ("fused" if stage == "teacher" else None)
    assert _same_metrics(first["metrics"], second["metrics"])
    # the final in-training evaluation saw the same weights and data
    assert _same_metrics(first["metrics"], {k: result.metrics[k] for k in api.METRICS})
    written = json.loads((tmp_path / "m.json").read_text())
    undefined_as_nan = {k: math.nan if v is None else v for k, v in written["metrics"].items()}  # null in the file
    assert _same_metrics(undefined_as_nan, first["metrics"]) and written["role"] == stage


def test_evaluate_teacher_branches(trained_teacher: api.TrainResult, tiny_recipe: Recipe) -> None:
    for branch in ("hr", "lr"):
        report = api.evaluate(tiny_recipe, trained_teacher.weights, branch=branch)
        assert report["branch"] == branch and list(report["metrics"]) == list(api.METRICS)


def test_evaluate_branch_on_a_student_is_refused(trained_student: api.TrainResult, tiny_recipe: Recipe) -> None:
    with pytest.raises(UsageError, match="--branch applies to teacher weights"):
        api.evaluate(tiny_recipe, trained_student.weights, branch="hr")


def _student_batch(recipe: Recipe):
    """Four augmented training items collated as the student's training batches are (HR, teacher padding)."""
    dataset = build_train_dataset(recipe)
    return get_role("student").collator(recipe)([dataset[(i, 7)] for i in range(4)])


def test_kd_weight_zero_is_plain_low_resolution_training(tiny_recipe: Recipe, trained_teacher: api.TrainResult) -> None:
    recipe = tiny_recipe.model_copy(update={"distill": tiny_recipe.distill.model_copy(update={"kd_weight": 0.0})})
    teacher = api.read_checkpoint(trained_teacher.weights, role="teacher")
    label_space = teacher.label_space
    torch.manual_seed(0)
    task = build_task(recipe, "student", label_space=label_space, teacher=teacher)
    assert isinstance(task, StudentTask) and task.kd_weight == 0.0
    init = copy.deepcopy(task.model.state_dict())
    plain = DetectionTask(model=copy.deepcopy(task.model), criterion=task.criterion, postprocess=task.postprocess, input_factor=recipe.teacher.k)
    plain.model.load_state_dict(init)
    batch = _student_batch(recipe)

    task.model.train(), plain.model.train()
    kd0 = task.losses(task.model, batch, iteration=10)
    lr = plain.losses(plain.model, batch, iteration=10)
    assert "loss_kd" not in kd0
    assert set(kd0) == set(lr) == {"loss_cls", "loss_box", "loss_ctr"}
    for name in lr:
        assert torch.equal(kd0[name], lr[name]), name

    # with a positive weight the detection terms are unchanged and loss_kd appears
    kd = StudentTask(
        model=copy.deepcopy(plain.model), teacher=task.teacher, distill_loss=build_distill_loss(recipe), kd_weight=1.0,
        ramp_iters=0, criterion=task.criterion, postprocess=task.postprocess, input_factor=recipe.teacher.k,
    )
    kd.model.load_state_dict(init)
    kd.model.train()
    with_kd = kd.losses(kd.model, batch, iteration=10)
    assert with_kd["loss_kd"].item() > 0
    for name in lr:
        assert torch.equal(with_kd[name], lr[name]), name


def test_a_batch_the_ranks_cannot_share_is_a_usage_error(tiny_recipe: Recipe, monkeypatch) -> None:
    from msad.api import training

    monkeypatch.setattr(training, "get_world_size", lambda: 3)
    with pytest.raises(UsageError, match=r"solver.batch_size = 4 .* cannot be split over 3 ranks"):
        training._check_batch_split(tiny_recipe, "teacher")
    monkeypatch.setattr(training, "get_world_size", lambda: 2)
    training._check_batch_split(tiny_recipe, "teacher")  # 4 images over 2 ranks: fine


def test_a_restarted_rank_refuses_a_directory_holding_another_run(tiny_recipe: Recipe, tmp_path: Path, monkeypatch) -> None:
    """Under torchrun a restarted rank resumes by itself (issue 22), but never another recipe's run."""
    from msad.errors import RunStateError

    out = tmp_path / "run"
    out.mkdir()
    other = tiny_recipe.model_copy(update={"solver": tiny_recipe.solver.model_copy(update={"lr": 0.5})})
    (out / "recipe.json").write_text(json.dumps(other.model_dump(mode="json")), encoding="utf-8")
    (out / "state.json").write_text("{}", encoding="utf-8")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # what torchrun sets in a restarted rank
    with pytest.raises(RunStateError, match=r"cannot resume .* differs from the run's in solver\.lr"):
        api.train(tiny_recipe, output=out)


def test_resuming_a_teacher_run_with_train_names_the_command_that_made_it(
    trained_teacher: api.TrainResult, tiny_recipe: Recipe, tmp_path: Path
) -> None:
    import shutil

    from msad.errors import RunStateError

    run = tmp_path / "teacher_run"
    shutil.copytree(trained_teacher.output, run)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(RunStateError) as info:
        api.train(tiny_recipe, output=run, resume=True)
    message = str(info.value)
    assert "holds a teacher run, made by `msad teacher`" in message and "msad teacher … --resume" in message
    assert "\n" not in message and "state_dict" not in message
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
