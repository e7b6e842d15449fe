"""The low-resolution student task: FCOS loss on the LR input plus feature distillation from the frozen teacher."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from msad.models.teacher import AlignedMultiScaleTeacher
from msad.structures import Batch
from msad.tasks.detection import DetectionTask

__all__ = ["KD_DOMINANCE", "StudentTask", "kd_ramp"]

#: How many times the detection loss the weighted KD term may exceed for a whole logging window before the run
#: says so (once).
KD_DOMINANCE = 10.0


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
        self._kd_warned = False

    def losses(self, model: nn.Module, batch: Batch, iteration: int) -> dict[str, Tensor]:
        """FCOS losses of the student plus ``loss_kd`` (absent when ``kd_weight`` is 0: plain LR training)."""
        outputs, features = model(self.network_input(batch.images), with_features=True)
        losses = self.detection_losses(outputs, batch)
        if self.kd_weight > 0:
            ramp = kd_ramp(iteration, self.ramp_iters)
            weight = self.kd_weight * ramp
            self.teacher.train(self.teacher_bn == "train")
            with torch.no_grad():
                target = self.teacher.fused_features(batch.images)
            raw = self.distill_loss(features, target)
            losses["loss_kd"] = weight * raw
            # new_full fills on the device from a Python number; new_tensor would copy it from the host (a sync)
            self._logged = {"kd_raw": raw.detach(), "kd_ramp": raw.detach().new_full((), ramp),
                            "kd_weight_effective": raw.detach().new_full((), weight)}
        return losses

    def logged_scalars(self) -> dict[str, Tensor]:
        """The last :meth:`losses` call's ``kd_raw`` (the distillation term before its weight), ``kd_ramp`` (the
        warm-up factor, 0 → 1 over ``ramp_iters``) and ``kd_weight_effective`` (``kd_weight`` × ``kd_ramp``), for
        ``metrics.jsonl``: ``loss_kd`` = ``kd_weight_effective`` · ``kd_raw`` grows during the ramp even while the
        raw term falls."""
        return dict(self._logged)

    def window_warnings(self, rows: list[dict[str, float]]) -> list[str]:
        """Said once per run: the weighted KD term exceeded the detection loss by more than
        :data:`KD_DOMINANCE`× at every iteration of a logging window (``rows``: the window's logged values)."""
        if self._kd_warned or not rows or any("loss_kd" not in row for row in rows):
            return []
        detection = [row["total_loss"] - row["loss_kd"] for row in rows]
        if not all(row["loss_kd"] > KD_DOMINANCE * det for row, det in zip(rows, detection, strict=True)):
            return []
        self._kd_warned = True
        kd, det = sum(row["loss_kd"] for row in rows) / len(rows), sum(detection) / len(rows)
        return [f"the weighted distillation term (loss_kd, mean {kd:.3g}) exceeded the detection loss (mean {det:.3g}) "
                f"more than {KD_DOMINANCE:g}× at every iteration of the last logging window: distillation dominates "
                "the gradient; a lower distill.kd_weight may train the detector better"]
