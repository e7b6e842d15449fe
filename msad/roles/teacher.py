"""The aligned multi-scale teacher: HR and ×1/k passes of one detector, fused by C-FF (MSAD stage 1).

Its HR branch uses pyramid levels ``p3``…``p7`` and its LR branch ``p2``…``p6`` (for k = 2), so the neck builds
``p2``…``p7``. Its batches are padded to ``teacher.size_divisibility`` so that both pyramids line up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from msad.build import build_detector
from msad.levels import HEAD_LEVELS, LevelPairing
from msad.models.fusion import CrossFeatureFusion
from msad.models.resolution_bn import convert_to_resolution_bn
from msad.models.teacher import BRANCHES, AlignedMultiScaleTeacher
from msad.roles.role import Role, TaskParts
from msad.structures import LevelOutputs
from msad.tasks.detection import DetectionTask
from msad.tasks.teacher import TeacherTask

if TYPE_CHECKING:
    from msad.config import Recipe

__all__ = ["Teacher", "TeacherBranch"]


class TeacherBranch(nn.Module):
    """A teacher seen as one network: its input to the head outputs of one branch (``hr``, ``lr`` or ``fused``).

    Only the passes that branch needs run (the ``hr`` branch runs no LR pass).
    """

    def __init__(self, teacher: AlignedMultiScaleTeacher, branch: str) -> None:
        super().__init__()
        if branch not in BRANCHES:
            raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
        self.teacher = teacher
        self.branch = branch

    @property
    def strides(self) -> dict[str, int]:
        """Head level → stride in the input's frame."""
        return self.teacher.strides

    def forward(self, images: Tensor) -> dict[str, LevelOutputs]:
        """Head outputs of the branch, keyed by head level."""
        return self.teacher(images, branches=(self.branch,)).branch(self.branch)


class Teacher(Role):
    """The aligned multi-scale teacher with C-FF (``msad teacher``)."""

    name = "teacher"
    stage = "teacher"
    branches = BRANCHES
    resume_sections = (*Role.resume_sections, "teacher")
    detector_prefix = "detector."

    def routing(self, pairing: LevelPairing) -> tuple[dict[str, str], list[str]]:
        """Identity routing; the neck also builds the LR levels that line up with the head levels."""
        identity = {lvl: lvl for lvl in HEAD_LEVELS}
        return identity, sorted(set(identity.values()) | set(pairing.lr_for_hr.values()))

    def build_model(self, recipe: Recipe, *, num_classes: int, teacher: nn.Module | None = None) -> nn.Module:
        """An :class:`AlignedMultiScaleTeacher`: the detector (per-resolution BN when ``teacher.bn`` asks) and
        the C-FF fusion."""
        pairing = LevelPairing(k=recipe.teacher.k)
        routing, levels = self.routing(pairing)
        detector = build_detector(recipe.model, num_classes=num_classes, head_levels=routing, neck_levels=levels)
        if recipe.teacher.bn == "per_resolution":
            convert_to_resolution_bn(detector.backbone)
        channels = detector.neck.feature_info[0].channels
        fusion = CrossFeatureFusion(channels=channels, hidden=recipe.teacher.fusion_hidden)
        return AlignedMultiScaleTeacher(detector=detector, fusion=fusion, pairing=pairing)

    def detector(self, model: nn.Module) -> nn.Module:
        """The shared detector of both passes."""
        return model.detector  # type: ignore[return-value]

    def size_divisibility(self, recipe: Recipe, frame: str = "hr") -> int:
        """``teacher.size_divisibility``: the HR and LR pyramids must line up."""
        self.check_frame(frame)
        return recipe.teacher.size_divisibility

    def branch(self, recipe: Recipe, requested: str | None = None) -> str | None:
        """``requested`` or ``teacher.eval_branch``."""
        branch = requested or recipe.teacher.eval_branch
        if branch not in self.branches:
            raise ValueError(f"a teacher's branch is one of {', '.join(self.branches)}, not {branch!r}")
        return branch

    def inference_network(self, model: nn.Module, branch: str | None = None) -> nn.Module:
        """The teacher running one branch (default ``fused``)."""
        return TeacherBranch(model, branch or "fused")  # type: ignore[arg-type]

    def _task(self, recipe: Recipe, parts: TaskParts, *, model: nn.Module | None, teacher: nn.Module | None,
              branch: str | None, num_classes: int) -> DetectionTask:
        model = model or self.build_model(recipe, num_classes=num_classes)
        weights = recipe.teacher.loss_weights.model_dump()
        return TeacherTask(model=model, loss_weights=weights, eval_branch=branch, **parts.kwargs())

    def input_label(self, recipe: Recipe, hr_size: tuple[int, int]) -> str:
        """``HR+LR h×w``: both passes."""
        h, w = hr_size
        return f"HR+LR {h}×{w}"

    def capacity(self, row: Any, recipe: Recipe) -> float:
        """An HR and an LR backbone pass."""
        return row.teacher_capacity
