"""Feature distillation losses between the student's pyramid and the teacher's fused pyramid.

Every loss takes two dicts keyed by head level (the pairing is done before, as data) and returns a
scalar summed over levels. Built-ins are registered in the ``msad.distill_losses`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FeatureDistillLoss", "MSADL1Loss", "MSELoss", "ChannelWiseLoss", "build_msad_l1", "build_mse", "build_cwd"]


class FeatureDistillLoss(nn.Module):
    """Base class: checks that both sides have the same levels and shapes, sums a per-level term."""

    def level_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Loss of one level; subclasses implement it."""
        raise NotImplementedError

    def forward(self, student: Mapping[str, Tensor], teacher: Mapping[str, Tensor]) -> Tensor:
        """Σ over levels of ``level_loss(student[l], teacher[l])``; the teacher side is never differentiated."""
        if set(student) != set(teacher):
            raise ValueError(f"distillation levels differ: student {sorted(student)}, teacher {sorted(teacher)}")
        total = None
        for lvl, s in student.items():
            t = teacher[lvl].detach()
            if s.shape != t.shape:
                raise ValueError(f"level {lvl}: student map {tuple(s.shape)} ≠ teacher map {tuple(t.shape)}")
            term = self.level_loss(s.float(), t.float())
            total = term if total is None else total + term
        if total is None:
            raise ValueError("no levels to distill")
        return total


class MSADL1Loss(FeatureDistillLoss):
    """MSAD's loss: ``α·T²·mean|S/T − F/T|`` per level (= ``α·T·mean|S − F|``)."""

    def __init__(self, *, alpha: float, temperature: float) -> None:
        super().__init__()
        self.alpha = alpha
        self.temperature = temperature

    def level_loss(self, student: Tensor, teacher: Tensor) -> Tensor:  # noqa: D102
        t = self.temperature
        return self.alpha * t * t * F.l1_loss(student / t, teacher / t)


class MSELoss(FeatureDistillLoss):
    """``weight · mean((S − F)²)`` per level."""

    def __init__(self, *, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def level_loss(self, student: Tensor, teacher: Tensor) -> Tensor:  # noqa: D102
        return self.weight * F.mse_loss(student, teacher)


class ChannelWiseLoss(FeatureDistillLoss):
    """Channel-wise distillation (Shu et al., ICCV 2021): per-channel spatial softmax, KL(teacher ‖ student).

    ``weight · τ² · Σ_c KL(softmax(F_c/τ) ‖ softmax(S_c/τ)) / (B·C)``.
    """

    def __init__(self, *, weight: float, temperature: float) -> None:
        super().__init__()
        self.weight = weight
        self.temperature = temperature

    def level_loss(self, student: Tensor, teacher: Tensor) -> Tensor:  # noqa: D102
        b, c = student.shape[:2]
        tau = self.temperature
        s = F.log_softmax(student.reshape(b * c, -1) / tau, dim=1)
        t = F.log_softmax(teacher.reshape(b * c, -1) / tau, dim=1)
        kl = torch.sum(t.exp() * (t - s))
        return self.weight * tau * tau * kl / (b * c)


def build_msad_l1(*, alpha: float = 0.2, temperature: float = 3.0) -> MSADL1Loss:
    """MSAD's L1 feature loss (``msad.distill_losses`` plugin ``msad_l1``).

    Args:
        alpha: loss weight α (0.2 in the paper).
        temperature: T (3 in the paper); the loss scales as α·T.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return MSADL1Loss(alpha=alpha, temperature=temperature)


def build_mse(*, weight: float = 1.0) -> MSELoss:
    """Mean squared feature loss (``msad.distill_losses`` plugin ``mse``).

    Args:
        weight: loss weight.
    """
    return MSELoss(weight=weight)


def build_cwd(*, weight: float = 1.0, temperature: float = 4.0) -> ChannelWiseLoss:
    """Channel-wise distillation loss (``msad.distill_losses`` plugin ``cwd``).

    Args:
        weight: loss weight.
        temperature: softmax temperature τ.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return ChannelWiseLoss(weight=weight, temperature=temperature)
