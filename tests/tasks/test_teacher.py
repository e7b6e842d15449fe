"""Teacher task controls: per-branch loss weights, and the recipe's choice of BN sharing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from msad.api.training import build_task
from msad.config import load_recipe
from msad.models.resolution_bn import ResolutionBatchNorm
from msad.roles import build_model
from msad.structures import Batch, Target

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.toml"
LABELS = [(1, "a"), (3, "b"), (7, "c")]
NO_VAL = ['data.val_annotations=""']


def _batch() -> Batch:
    torch.manual_seed(1)
    boxes = [torch.tensor([[10.0, 12.0, 60.0, 50.0], [70.0, 80.0, 120.0, 126.0]]), torch.tensor([[30.0, 20.0, 90.0, 110.0]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    return Batch(
        images=torch.randn(2, 3, 128, 128),
        image_sizes=[(128, 128)] * 2,
        targets=[Target(b, lab) for b, lab in zip(boxes, labels, strict=True)],
    )


def _total(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(losses.values())


def test_hr_only_teacher_loss_equals_the_baseline_loss_on_the_same_batch_and_weights() -> None:
    recipe = load_recipe(TINY, overrides=[*NO_VAL, "teacher.loss_weights={hr = 1.0, lr = 0.0, fused = 0.0}"])
    torch.manual_seed(0)
    teacher = build_model(recipe, role="teacher", num_classes=len(LABELS)).train()
    baseline = build_model(recipe, role="baseline", num_classes=len(LABELS)).train()
    loaded = baseline.load_state_dict(teacher.detector.state_dict(), strict=False)
    assert not loaded.missing_keys  # every baseline weight comes from the teacher (the teacher has P2 on top)
    batch = _batch()
    teacher_losses = build_task(recipe, "teacher", label_space=LABELS, model=teacher).losses(teacher, batch, 0)
    baseline_losses = build_task(recipe, "baseline", label_space=LABELS, model=baseline).losses(baseline, batch, 0)
    for name, value in baseline_losses.items():
        torch.testing.assert_close(teacher_losses[f"hr_{name}"], value)
        assert teacher_losses[f"lr_{name}"].item() == 0.0 and teacher_losses[f"fused_{name}"].item() == 0.0
    torch.testing.assert_close(_total(teacher_losses), _total(baseline_losses))
    # the paper's weights add the LR and fused losses on top: the comparison above can fail
    paper = build_task(load_recipe(TINY, overrides=NO_VAL), "teacher", label_space=LABELS, model=teacher)
    assert _total(paper.losses(teacher, batch, 0)).item() > _total(baseline_losses).item() + 1e-3


def test_teacher_task_loss_weights_default_to_the_paper_and_are_checked() -> None:
    recipe = load_recipe(TINY, overrides=NO_VAL)
    task = build_task(recipe, "teacher", label_space=LABELS)
    assert task.branch_weights == {"hr": 1.0, "lr": 1.0, "fused": 0.4}
    weighted = load_recipe(TINY, overrides=[*NO_VAL, "teacher.loss_weights.lr=0.5"])
    assert build_task(weighted, "teacher", label_space=LABELS, model=task.model).branch_weights["lr"] == 0.5
    from msad.tasks.teacher import TeacherTask

    with pytest.raises(ValueError, match="loss_weights"):
        TeacherTask(loss_weights={"hr": 1.0}, model=task.model, criterion=task.criterion, postprocess=task.postprocess)


def test_per_resolution_recipe_builds_a_private_bn_teacher_and_a_plain_student() -> None:
    recipe = load_recipe(TINY, overrides=[*NO_VAL, 'teacher.bn="per_resolution"'])
    teacher = build_model(recipe, role="teacher", num_classes=len(LABELS))
    assert any(isinstance(m, ResolutionBatchNorm) for m in teacher.detector.backbone.modules())
    assert not any(isinstance(m, ResolutionBatchNorm) for m in teacher.detector.neck.modules())
    shared = build_model(load_recipe(TINY, overrides=NO_VAL), role="teacher", num_classes=len(LABELS))
    assert not any(isinstance(m, ResolutionBatchNorm) for m in shared.modules())
    student = build_model(recipe, role="student", num_classes=len(LABELS), teacher=teacher)
    plain_student = build_model(recipe, role="student", num_classes=len(LABELS))
    assert student.state_dict().keys() == plain_student.state_dict().keys()  # loads like any student checkpoint


def test_hr_only_teacher_trains_its_hr_path_exactly_like_the_baseline() -> None:
    """Three SGD steps from the same weights on the same batch: every baseline weight moves identically in the
    HR-only teacher (the LR pass still runs; it changes only BN running statistics, which no step reads)."""
    recipe = load_recipe(TINY, overrides=[*NO_VAL, "teacher.loss_weights={hr = 1.0, lr = 0.0, fused = 0.0}"])
    torch.manual_seed(0)
    teacher = build_model(recipe, role="teacher", num_classes=len(LABELS)).train()
    baseline = build_model(recipe, role="baseline", num_classes=len(LABELS)).train()
    baseline.load_state_dict(teacher.detector.state_dict(), strict=False)
    tasks = {
        "teacher": (teacher, build_task(recipe, "teacher", label_space=LABELS, model=teacher)),
        "baseline": (baseline, build_task(recipe, "baseline", label_space=LABELS, model=baseline)),
    }
    batch = _batch()
    for model, task in tasks.values():
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        for step in range(3):
            optimizer.zero_grad()
            _total(task.losses(model, batch, step)).backward()
            optimizer.step()
    trained = dict(teacher.detector.named_parameters())
    trainable = 0
    for name, param in baseline.named_parameters():
        torch.testing.assert_close(trained[name], param, rtol=1e-4, atol=1e-6, msg=name)
        trainable += int(param.requires_grad)
    assert trainable > 100
