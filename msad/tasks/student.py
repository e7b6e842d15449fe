"""The low-resolution student task: FCOS loss on the LR input plus feature distillation from the frozen teacher."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from msad.models.teacher import AlignedMultiScaleTeacher
from msad.structures import Batch
from msad.tasks.detection import DetectionTask

__all__ = ["StudentTask", "kd_ramp"]


def kd_ramp(iteration: int, ramp_iters: int) -> float:
    """Linear ramp of the distillation weight: 0 at iteration 0, 1 from ``ramp_iters`` on."""
    if ramp_iters <= 0:
        return 1.0
    return min(1.0, iteration / ramp_iters)


class StudentTask(DetectionTask):
    """Distil a student from a frozen teacher's fused pyramid.

    Args:
        teacher: the frozen teacher (never optimised, never wrapped in DDP).
        distill_loss: ``loss(student_features, teacher_features) -> Tensor``, both keyed by head level.
        kd_weight: overall weight of the distillation term; 0 makes this plain LR training.
        ramp_iters: iterations over which the distillation weight ramps up linearly.
        teacher_bn: ``"eval"`` (frozen statistics) or ``"train"`` (batch statistics, as the reference code).
        **kwargs: as :class:`DetectionTask`; ``input_factor`` must be the teacher's k.
    """

    def __init__(
        self,
        *,
        teacher: AlignedMultiScaleTeacher,
        distill_loss: Callable[[dict[str, Tensor], dict[str, Tensor]], Tensor],
        kd_weight: float = 1.0,
        ramp_iters: int = 500,
        teacher_bn: str = "eval",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if teacher_bn not in ("eval", "train"):
            raise ValueError(f"teacher_bn must be 'eval' or 'train', got {teacher_bn!r}")
        if self.input_factor != teacher.pairing.k:
            raise ValueError(f"student input factor {self.input_factor} ≠ teacher k {teacher.pairing.k}")
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        self.frozen = {"teacher": teacher}
        self.distill_loss = distill_loss
        self.kd_weight = kd_weight
        self.ramp_iters = ramp_iters
        self.teacher_bn = teacher_bn
        self._logged: dict[str, Tensor] = {}

    def losses(self, model: nn.Module, batch: Batch, iteration: int) -> dict[str, Tensor]:
        """FCOS losses of the student plus ``loss_kd`` (absent when ``kd_weight`` is 0: plain LR training)."""
        outputs, features = model(self.network_input(batch.images), with_features=True)
        losses = self.detection_losses(outputs, batch)
        if self.kd_weight > 0:
            weight = self.kd_weight * kd_ramp(iteration, self.ramp_iters)
            self.teacher.train(self.teacher_bn == "train")
            with torch.no_grad():
                target = self.teacher.fused_features(batch.images)
            raw = self.distill_loss(features, target)
            losses["loss_kd"] = weight * raw
            # new_full fills on the device from a Python number; new_tensor would copy it from the host (a sync)
            self._logged = {"kd_raw": raw.detach(), "kd_weight": raw.detach().new_full((), weight)}
        return losses

    def logged_scalars(self) -> dict[str, Tensor]:
        """``kd_raw`` (the distillation term before its weight) and ``kd_weight`` (``kd_weight`` × ramp) of the
        last :meth:`losses` call, for ``metrics.jsonl``: ``loss_kd`` = ``kd_weight`` · ``kd_raw`` grows during the
        ramp even while the raw term falls."""
        return dict(self._logged)
