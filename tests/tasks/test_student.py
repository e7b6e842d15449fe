"""The student task from outside: the KD ramp, the frozen teacher's BN mode, gradients, and the evaluation frame.

Built by :func:`msad.api.training.build_task` from the learned (session) teacher checkpoint, as ``msad distill`` does.
"""

from __future__ import annotations

import pytest
import torch

from msad import api
from msad.api.training import build_task
from msad.build import build_train_dataset
from msad.config import Recipe
from msad.roles import get_role
from msad.tasks.student import StudentTask, kd_ramp


def _with(recipe: Recipe, **distill) -> Recipe:
    return recipe.model_copy(update={"distill": recipe.distill.model_copy(update=distill)})


def _student_task(recipe: Recipe, teacher: api.TrainResult) -> StudentTask:
    ckpt = api.read_checkpoint(teacher.weights, role="teacher")
    torch.manual_seed(0)
    task = build_task(recipe, "student", label_space=ckpt.label_space, teacher=ckpt)
    assert isinstance(task, StudentTask)
    task.model.train()
    return task


def _batch(recipe: Recipe):
    """Four training items collated as the student's training batches are (HR, the teacher's padding)."""
    dataset = build_train_dataset(recipe)
    return get_role("student").collator(recipe)([dataset[(i, 3)] for i in range(4)])


def test_kd_ramp_is_linear_then_flat() -> None:
    assert [kd_ramp(i, 10) for i in (0, 1, 5, 10, 11, 1000)] == [0.0, 0.1, 0.5, 1.0, 1.0, 1.0]
    assert kd_ramp(0, 0) == 1.0 and kd_ramp(7, 0) == 1.0  # no ramp: full weight from the start


def test_the_kd_term_follows_the_ramp(easy_recipe: Recipe, learned_teacher: api.TrainResult) -> None:
    assert easy_recipe.distill.ramp_iters == 10
    task = _student_task(easy_recipe, learned_teacher)
    batch = _batch(easy_recipe)
    kd = {i: task.losses(task.model, batch, iteration=i)["loss_kd"].item() for i in (0, 5, 10, 40)}
    assert kd[0] == 0.0
    assert kd[10] > 0
    assert kd[5] == pytest.approx(0.5 * kd[10], rel=1e-5)
    assert kd[40] == pytest.approx(kd[10], rel=1e-5)


def _bn_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_frozen_teacher_bn_mode_is_applied(mode: str, easy_recipe: Recipe, learned_teacher: api.TrainResult) -> None:
    if mode == "eval":
        assert easy_recipe.distill.teacher_bn == "eval"  # the default (the reference uses train)
    task = _student_task(_with(easy_recipe, teacher_bn=mode), learned_teacher)
    before = _bn_state(task.teacher)
    assert before, "the teacher has BatchNorm statistics"
    task.losses(task.model, _batch(easy_recipe), iteration=20)
    after = _bn_state(task.teacher)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if mode == "eval":
        assert not changed and not any(m.training for m in task.teacher.modules())
    else:
        assert changed  # batch statistics: the running averages moved


def test_every_trainable_student_parameter_gets_a_gradient(easy_recipe: Recipe, learned_teacher: api.TrainResult) -> None:
    task = _student_task(easy_recipe, learned_teacher)
    sum(task.losses(task.model, _batch(easy_recipe), iteration=20).values()).backward()
    missing = [n for n, p in task.model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient (DDP would need find_unused_parameters): {missing}"
    assert all(not p.requires_grad and p.grad is None for p in task.teacher.parameters())


def test_student_evaluation_padding_equals_its_training_padding(easy_recipe: Recipe) -> None:
    for recipe in (easy_recipe, easy_recipe.model_copy(update={"teacher": easy_recipe.teacher.model_copy(update={"size_divisibility": 256})})):
        train = get_role("student").collator(recipe).size_divisibility
        assert get_role("student").collator(recipe).size_divisibility == train == recipe.teacher.size_divisibility


def test_the_student_is_evaluated_on_the_half_resolution_copy_in_the_hr_frame(
    easy_recipe: Recipe, learned_student: api.TrainResult
) -> None:
    ckpt = api.read_checkpoint(learned_student.weights, role="student")
    model = api.load_model(ckpt).eval()
    task = build_task(easy_recipe, "student", label_space=ckpt.label_space, model=model)
    images = _batch(easy_recipe).images
    sizes = [tuple(images.shape[-2:])] * len(images)
    detections = task.predict(model, images, sizes)
    # The nearest ×½ copy keeps the even rows and columns: noise on the odd ones must change nothing…
    noisy = images.clone()
    noisy[:, :, 1::2, :] = torch.randn_like(noisy[:, :, 1::2, :]) * 3
    noisy[:, :, :, 1::2] = torch.randn_like(noisy[:, :, :, 1::2]) * 3
    for a, b in zip(detections, task.predict(model, noisy, sizes), strict=True):
        torch.testing.assert_close(a.boxes, b.boxes)
        torch.testing.assert_close(a.scores, b.scores)
    # …while the same noise does change what an HR network sees.
    assert not torch.equal(model(noisy)["p3"].cls_logits, model(images)["p3"].cls_logits)
    # Boxes come out in the HR frame: confident boxes reach beyond the LR image (32 px).
    confident = torch.cat([d.boxes[d.scores > 0.3] for d in detections])
    assert len(confident) and confident[:, 2:].max() > images.shape[-1] / 2
