"""The low-resolution student (MSAD stage 2).

The student is a plain :class:`~msad.models.detector.FCOS` of the teacher's architecture whose head levels
are routed to the LR pyramid (``p3 ← p2`` … for k = 2). It sees only the LR image, yet its points and
strides are those of the HR frame, so it is trained on HR boxes and its boxes come out in the HR frame;
:func:`to_input_frame` maps them back to the frame of the LR image it was given.
"""

from __future__ import annotations

import copy

from torch import nn

from msad.levels import LevelPairing
from msad.models.detector import FCOS
from msad.models.resolution_bn import collapse_resolution_bn
from msad.models.teacher import AlignedMultiScaleTeacher
from msad.structures import Detections

__all__ = ["student_from_teacher", "load_neck_subset", "to_input_frame"]


def load_neck_subset(neck: nn.Module, teacher_neck: nn.Module) -> None:
    """Copy a teacher neck's weights into a neck built for fewer levels.

    The student's neck omits levels it never uses (``p7`` for k = 2), so that every parameter it holds
    receives a gradient (DDP without ``find_unused_parameters``). Every student parameter must exist in
    the teacher; teacher-only entries are ignored.

    Raises:
        ValueError: the student neck has parameters the teacher's lacks.
    """
    result = neck.load_state_dict(teacher_neck.state_dict(), strict=False)
    if result.missing_keys:
        raise ValueError(f"the teacher's neck lacks the student's parameters {result.missing_keys[:4]}")


def student_from_teacher(teacher: AlignedMultiScaleTeacher, *, neck: nn.Module | None = None) -> FCOS:
    """A student initialised from the teacher's backbone, neck and head, routed to the LR pyramid.

    A teacher with private BN per resolution hands the student its ``lr`` BN set (the statistics and affine
    parameters of the low-resolution input the student sees), so the student is a plain detector.

    Args:
        teacher: the trained teacher (its modules are copied, never shared).
        neck: a freshly built neck producing exactly the student's LR levels; its weights are loaded from
            the teacher's. ``None`` copies the teacher's whole neck (levels the student never uses included).
    """
    detector = teacher.detector
    if neck is None:
        neck = copy.deepcopy(detector.neck)
    else:
        load_neck_subset(neck, detector.neck)
    return FCOS(
        backbone=collapse_resolution_bn(copy.deepcopy(detector.backbone), "lr"),
        neck=neck,
        head=copy.deepcopy(detector.head),
        head_levels=teacher.pairing.lr_for_hr,
    )


def to_input_frame(detections: list[Detections], pairing: LevelPairing) -> list[Detections]:
    """Map student detections from the HR frame to the frame of the LR input (divide by k)."""
    inv = 1.0 / pairing.k
    return [d.scaled(inv, inv) for d in detections]
