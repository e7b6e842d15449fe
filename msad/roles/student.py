"""The low-resolution student (MSAD stage 2): head levels ``p3``…``p7`` fed by its LR pyramid ``p2``…``p6``.

It sees only the ×1/k copy of an HR image (or an image that already is its LR input, the ``lr`` frame). It trains
beside the teacher on the teacher's HR batches and is evaluated with the same padding (as the reference), so its
×1/k input has the borders it was trained with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from msad.build import build_detector, build_distill_loss, build_neck
from msad.levels import LevelPairing
from msad.models.student import student_from_teacher
from msad.roles.role import FRAMES, Role, TaskParts
from msad.tasks.detection import DetectionTask
from msad.tasks.student import StudentTask

if TYPE_CHECKING:
    from msad.config import Recipe

__all__ = ["Student"]


class Student(Role):
    """The LR student distilled from a trained teacher (``msad distill``)."""

    name = "student"
    stage = "distill"
    frames = FRAMES
    resume_sections = (*Role.resume_sections, "teacher", "distill")

    def routing(self, pairing: LevelPairing) -> tuple[dict[str, str], list[str]]:
        """Each head level is fed by the LR pyramid level that lines up with it."""
        routing = dict(pairing.lr_for_hr)
        return routing, sorted(set(routing.values()))

    def build_model(self, recipe: Recipe, *, num_classes: int, teacher: nn.Module | None = None) -> nn.Module:
        """An :class:`~msad.models.detector.FCOS` with the student's routing: initialised from ``teacher`` (its
        backbone, neck and head weights) when given, at random otherwise (e.g. before loading student weights)."""
        routing, levels = self.routing(LevelPairing(k=recipe.teacher.k))
        if teacher is not None:
            neck = build_neck(recipe.model, teacher.detector.backbone, levels)  # type: ignore[union-attr]
            return student_from_teacher(teacher, neck=neck)  # type: ignore[arg-type]
        return build_detector(recipe.model, num_classes=num_classes, head_levels=routing, neck_levels=levels)

    def check_trainable(self, recipe: Recipe) -> None:
        """Nothing to refuse: the student is initialised from its teacher, so its frozen stages hold trained weights."""

    def size_divisibility(self, recipe: Recipe, frame: str = "hr") -> int:
        """HR batches: the teacher's multiple (the padding it trains and is evaluated with); LR inputs: a
        single-resolution model's ``data.size_divisibility``."""
        self.check_frame(frame)
        return recipe.teacher.size_divisibility if frame == "hr" else recipe.data.size_divisibility

    def input_factor(self, recipe: Recipe, frame: str = "hr") -> int:
        """k for an HR image (its network sees the ×1/k copy), 1 for its LR input."""
        self.check_frame(frame)
        return recipe.teacher.k if frame == "hr" else 1

    def output_factor(self, recipe: Recipe, frame: str = "hr") -> int:
        """Its head strides are in the HR frame: boxes of an LR input come out k× too large."""
        self.check_frame(frame)
        return recipe.teacher.k if frame == "lr" else 1

    def metadata(self, recipe: Recipe) -> dict[str, str]:
        """The teacher's BatchNorm mode during distillation."""
        return {"teacher_bn": recipe.distill.teacher_bn}

    def _task(self, recipe: Recipe, parts: TaskParts, *, model: nn.Module | None, teacher: nn.Module | None,
              branch: str | None, num_classes: int) -> DetectionTask:
        k = self.input_factor(recipe)
        if model is not None:  # a trained student, evaluated: no teacher needed
            return DetectionTask(model=model, input_factor=k, **parts.kwargs())
        if teacher is None:
            raise ValueError("the student task needs the trained teacher (or the student's model, to evaluate)")
        d = recipe.distill
        return StudentTask(
            model=self.build_model(recipe, num_classes=num_classes, teacher=teacher), teacher=teacher,
            distill_loss=build_distill_loss(recipe), kd_weight=d.kd_weight, ramp_iters=d.ramp_iters,
            teacher_bn=d.teacher_bn, input_factor=k, **parts.kwargs(),
        )

    def input_label(self, recipe: Recipe, hr_size: tuple[int, int]) -> str:
        """``LR h/k×w/k``: the ×1/k copy."""
        h, w = hr_size
        k = recipe.teacher.k
        return f"LR {h // k}×{w // k}"

    def capacity(self, row: Any, recipe: Recipe) -> float:
        """One LR backbone pass."""
        return row.student_capacity
