"""The low-resolution student (MSAD stage 2).

The student is a plain :class:`~msad.models.detector.FCOS` of the teacher's architecture whose head levels
are routed to the LR pyramid (``p3 ← p2`` … for k = 2). It sees only the LR image, yet its points and
strides are those of the HR frame, so it is trained on HR boxes and its boxes come out in the HR frame;
:func:`to_input_frame` maps them back to the frame of the LR image it was given.
"""

from __future__ import annotations

import copy

from msad.levels import LevelPairing
from msad.models.detector import FCOS
from msad.models.teacher import AlignedMultiScaleTeacher
from msad.structures import Detections

__all__ = ["student_from_teacher", "to_input_frame"]


def student_from_teacher(teacher: AlignedMultiScaleTeacher) -> FCOS:
    """A student initialised from the teacher's backbone, neck and head, routed to the LR pyramid."""
    detector = teacher.detector
    return FCOS(
        backbone=copy.deepcopy(detector.backbone),
        neck=copy.deepcopy(detector.neck),
        head=copy.deepcopy(detector.head),
        head_levels=teacher.pairing.lr_for_hr,
    )


def to_input_frame(detections: list[Detections], pairing: LevelPairing) -> list[Detections]:
    """Map student detections from the HR frame to the frame of the LR input (divide by k)."""
    inv = 1.0 / pairing.k
    return [d.scaled(inv, inv) for d in detections]
