"""End to end on runs that learn (the easy dataset): evaluation compares real numbers, not zeros.

The ``learned_*`` session fixtures train a teacher, a student and an HR baseline to clearly non-zero AP, so a
wrong branch, frame or padding shows up as a changed metric.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from msad import api
from msad.config import Recipe
from msad.tasks.student import StudentTask

MIN_AP = 2.0  # the learned runs reach 5.7 (baseline), 13.0 (teacher) and 33.5 (student) AP


def _metrics(report: dict) -> dict[str, float]:
    return {k: v for k, v in report["metrics"].items() if not (isinstance(v, float) and math.isnan(v))}


@pytest.mark.parametrize("stage", ["teacher", "student", "baseline"])
def test_learned_runs_reach_a_clearly_non_zero_ap_and_evaluation_reproduces_it(
    stage: str, request: pytest.FixtureRequest, easy_recipe: Recipe
) -> None:
    result: api.TrainResult = request.getfixturevalue(f"learned_{stage}")
    assert result.metrics["AP"] > MIN_AP and result.metrics["AP50"] > 5 * MIN_AP
    # the weights saved at the end give exactly the metrics of the in-training evaluation
    report = api.evaluate(easy_recipe, result.weights)
    assert _metrics(report) == {k: v for k, v in result.metrics.items() if k in report["metrics"] and not math.isnan(v)}


def _with_even_fusion(weights: Path, out: Path) -> Path:
    """A copy of a teacher whose C-FF gives (0.5, 0.5) everywhere: its fused branch is neither HR nor LR.

    A briefly trained C-FF can saturate towards one input at some levels (fused == LR there), which would let
    a fused → LR routing slip through; zero FC weights make the softmax exactly uniform.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from msad.serialization import DIGEST_KEY, tensors_digest

    with safe_open(str(weights), "pt") as f:
        metadata = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    fusion_keys = [k for k in state if k.startswith("fusion.")]
    assert fusion_keys, "the teacher checkpoint has no C-FF weights"
    for k in fusion_keys:
        state[k] = torch.zeros_like(state[k])
    # an edit made on purpose: record the edited tensors' digest, as msad's own save does
    save_file(state, str(out), metadata={**metadata, DIGEST_KEY: tensors_digest(state)})
    return out


def test_teacher_branches_are_routed(easy_recipe: Recipe, learned_teacher: api.TrainResult, tmp_path: Path) -> None:
    # the default branch (fused) is what the training run reported
    fused = api.evaluate(easy_recipe, learned_teacher.weights)
    assert fused["branch"] == "fused"
    assert _metrics(fused) == {k: v for k, v in learned_teacher.metrics.items() if not math.isnan(v)}
    even = _with_even_fusion(learned_teacher.weights, tmp_path / "even.safetensors")
    reports = {b: api.evaluate(easy_recipe, even, branch=b) for b in ("hr", "lr", "fused")}
    assert {b: r["branch"] for b, r in reports.items()} == {"hr": "hr", "lr": "lr", "fused": "fused"}
    metrics = {b: tuple(_metrics(r).values()) for b, r in reports.items()}
    assert len(set(metrics.values())) == 3, metrics  # three different detectors, three different results


@pytest.mark.parametrize("stage", ["teacher", "student", "baseline"])
def test_evaluation_does_not_depend_on_which_images_share_a_batch(
    stage: str, request: pytest.FixtureRequest, easy_recipe: Recipe
) -> None:
    # the validation set alternates 64×64 and 64×96 images: in batches of 4 the small ones are padded wider
    result: api.TrainResult = request.getfixturevalue(f"learned_{stage}")
    alone = api.evaluate(easy_recipe, result.weights, batch_size=1)
    batched = api.evaluate(easy_recipe, result.weights, batch_size=4)
    assert _metrics(alone) == _metrics(batched)


class _Stop(RuntimeError):
    """Stands in for a run killed mid-way."""


def test_student_resume_continues_from_its_own_state_not_the_teacher(
    easy_recipe: Recipe, learned_teacher: api.TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = easy_recipe.model_copy(update={
        "solver": easy_recipe.solver.model_copy(update={"iters": 4}),
        "run": easy_recipe.run.model_copy(update={"checkpoint_period": 2}),
    })
    full = api.distill(recipe, teacher=learned_teacher.weights, output=tmp_path / "full")
    losses, calls = StudentTask.losses, []

    def stop_at_the_third_step(self, model, batch, iteration):
        calls.append(iteration)
        if len(calls) == 3:
            raise _Stop("stopped after the state of iteration 2 was saved")
        return losses(self, model, batch, iteration)

    with monkeypatch.context() as patch:
        patch.setattr(StudentTask, "losses", stop_at_the_third_step)
        with pytest.raises(_Stop):
            api.distill(recipe, teacher=learned_teacher.weights, output=tmp_path / "part")
    resumed = api.distill(recipe, teacher=learned_teacher.weights, output=tmp_path / "part", resume=True)
    a, b = load_file(full.weights), load_file(resumed.weights)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
