"""What the teacher task optimises, seen from outside: L(HR) + L(LR) + 0.4·L(fused), and a gradient for every weight."""

from __future__ import annotations

from pathlib import Path

import torch

from msad.api.training import build_task
from msad.config import load_recipe
from msad.ops.losses import FCOSCriterion
from msad.roles import build_model
from msad.structures import Batch, Target

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.toml"
LABELS = [(1, "a"), (3, "b")]


def _batch() -> Batch:
    """Two 128×128 images with three large boxes (every branch gets positives)."""
    generator = torch.Generator().manual_seed(3)
    boxes = [torch.tensor([[8.0, 10.0, 70.0, 60.0], [64.0, 70.0, 120.0, 124.0]]), torch.tensor([[20.0, 16.0, 100.0, 110.0]])]
    labels = [torch.tensor([0, 1]), torch.tensor([1])]
    return Batch(
        images=torch.randn(2, 3, 128, 128, generator=generator),
        image_sizes=[(128, 128)] * 2,
        targets=[Target(b, lab) for b, lab in zip(boxes, labels, strict=True)],
    )


def _teacher_task():
    recipe = load_recipe(TINY, overrides=['data.val_annotations=""'])
    torch.manual_seed(0)
    model = build_model(recipe, role="teacher", num_classes=len(LABELS)).train()
    return recipe, build_task(recipe, "teacher", label_space=LABELS, model=model)


def test_teacher_loss_is_hr_plus_lr_plus_0_4_fused() -> None:
    recipe, task = _teacher_task()
    batch = _batch()
    total = sum(task.losses(task.model, batch, iteration=0).values())
    # Independent expectation: FCOS losses of each branch's head outputs, from a fresh criterion.
    loss = recipe.model.loss
    criterion = FCOSCriterion(num_classes=len(LABELS), focal_alpha=loss.focal_alpha, focal_gamma=loss.focal_gamma,
                              center_radius=loss.center_radius)
    with torch.no_grad():
        out = task.model(batch.images)
        per_branch = {b: sum(criterion(out.branch(b), batch.targets, task.model.strides).values()) for b in ("hr", "lr", "fused")}
    assert len({round(v.item(), 4) for v in per_branch.values()}) == 3  # distinct, so the weights are identifiable
    expected = per_branch["hr"] + per_branch["lr"] + 0.4 * per_branch["fused"]
    torch.testing.assert_close(total.detach(), expected, rtol=1e-5, atol=1e-6)


def test_every_trainable_teacher_parameter_gets_a_gradient() -> None:
    _, task = _teacher_task()
    sum(task.losses(task.model, _batch(), iteration=0).values()).backward()
    missing = [n for n, p in task.model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient (DDP would need find_unused_parameters): {missing}"
    assert task.model.fusion.fc[0].weight.grad.abs().sum() > 0  # C-FF really learns from the fused loss


def test_the_teacher_assigns_targets_once_per_step(monkeypatch) -> None:
    _, task = _teacher_task()
    calls = []
    assign = task.criterion.assign
    monkeypatch.setattr(task.criterion, "assign", lambda *a, **k: calls.append(1) or assign(*a, **k))
    losses = task.losses(task.model, _batch(), iteration=0)
    assert len(calls) == 1 and len(losses) == 9  # three branches × three terms from one assignment
