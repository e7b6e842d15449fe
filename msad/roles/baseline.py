"""The single-resolution FCOS baseline: head levels ``p3``…``p7`` fed by the same pyramid levels.

Trained at ``data.scale`` (1: the HR baseline; 1/k: the LR baseline the student is compared with).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from msad.build import build_detector
from msad.levels import HEAD_LEVELS, LevelPairing
from msad.roles.role import Role, TaskParts
from msad.tasks.detection import DetectionTask

if TYPE_CHECKING:
    from msad.config import Recipe

__all__ = ["Baseline"]


class Baseline(Role):
    """The FCOS baseline (``msad train``): one detector on the image at ``data.scale``."""

    name = "baseline"
    stage = "train"

    def routing(self, pairing: LevelPairing) -> tuple[dict[str, str], list[str]]:
        """Identity: each head level is fed by the pyramid level of the same name."""
        return {lvl: lvl for lvl in HEAD_LEVELS}, list(HEAD_LEVELS)

    def build_model(self, recipe: Recipe, *, num_classes: int, teacher: nn.Module | None = None) -> nn.Module:
        """An :class:`~msad.models.detector.FCOS` from the recipe's plugins."""
        routing, levels = self.routing(LevelPairing(k=recipe.teacher.k))
        return build_detector(recipe.model, num_classes=num_classes, head_levels=routing, neck_levels=levels)

    def _task(self, recipe: Recipe, parts: TaskParts, *, model: nn.Module | None, teacher: nn.Module | None,
              branch: str | None, num_classes: int) -> DetectionTask:
        return DetectionTask(model=model or self.build_model(recipe, num_classes=num_classes), **parts.kwargs())

    def describe(self, recipe: Recipe) -> str:
        """``FCOS baseline, HR`` / ``, LR`` / ``, ×0.75`` by the scale it was trained at."""
        scale = recipe.data.scale
        return "FCOS baseline, " + ("HR" if scale == 1 else "LR" if scale == 1 / recipe.teacher.k else f"×{scale:g}")

    def input_label(self, recipe: Recipe, hr_size: tuple[int, int]) -> str:
        """``HR h×w`` or ``LR h×w``: the image at the baseline's own scale."""
        h, w = hr_size
        return f"{'HR' if recipe.data.scale == 1 else 'LR'} {h}×{w}"

    def capacity(self, row: Any, recipe: Recipe) -> float:
        """The LR baseline's backbone is the student's; an HR pass scaled by ``data.scale``² otherwise."""
        scale = recipe.data.scale
        if scale == 1 / recipe.teacher.k:
            return row.student_capacity
        hr = row.teacher_capacity - row.student_capacity  # the teacher's HR pass: the HR baseline's backbone
        return hr * scale**2
