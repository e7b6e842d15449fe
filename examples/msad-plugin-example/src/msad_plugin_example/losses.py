"""``attention``: attention-transfer distillation (Zagoruyko & Komodakis, ICLR 2017).

For each level the spatial attention map of a ``[B, C, H, W]`` feature is ``A = mean_c |F_c|^p`` flattened to
``[B, H·W]`` and L2-normalised per image. The loss is

    weight · mean over levels of mean((A_student − A_teacher)²)

so it only asks the student to attend where the teacher does; channel counts may differ between the two sides.
Contract (msad ``msad.distill_losses``): ``loss(student_features, teacher_features) -> scalar Tensor``, both dicts
keyed by the same level names; the teacher side is never differentiated.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AttentionTransferLoss", "attention_map", "build_attention_transfer"]


def attention_map(features: Tensor, p: float = 2.0, eps: float = 1e-12) -> Tensor:
    """Spatial attention ``[B, H·W]`` of ``features[B, C, H, W]``: mean over channels of ``|F|^p``, L2-normalised."""
    if features.dim() != 4:
        raise ValueError(f"expected a feature map [B, C, H, W], got shape {tuple(features.shape)}")
    att = features.float().abs().pow(p).mean(dim=1).flatten(1)
    return F.normalize(att, p=2.0, dim=1, eps=eps)


class AttentionTransferLoss(nn.Module):
    """Attention transfer between two pyramids keyed by level.

    Args:
        weight: loss weight.
        p: exponent of ``|F|`` in the attention map (2 in the paper).
    """

    def __init__(self, *, weight: float = 1.0, p: float = 2.0) -> None:
        super().__init__()
        self.weight = weight
        self.p = p

    def extra_repr(self) -> str:  # noqa: D102
        return f"weight={self.weight}, p={self.p}"

    def forward(self, student: Mapping[str, Tensor], teacher: Mapping[str, Tensor]) -> Tensor:
        """``weight · mean_l mean((A(S_l) − A(T_l))²)``.

        Raises:
            ValueError: different level sets, no levels, a map that is not 4-D, or different batch or spatial sizes
                on one level.
        """
        if set(student) != set(teacher):
            raise ValueError(
                f"attention transfer: levels differ: student {sorted(student)}, teacher {sorted(teacher)}"
            )
        if not student:
            raise ValueError("attention transfer: no levels to distill")
        terms = []
        for level in sorted(student):
            s, t = student[level], teacher[level]
            for side, x in (("student", s), ("teacher", t)):
                if x.dim() != 4:
                    raise ValueError(
                        f"attention transfer: level {level}: {side} map must be [B, C, H, W], got {tuple(x.shape)}"
                    )
            if s.shape[0] != t.shape[0] or s.shape[-2:] != t.shape[-2:]:
                raise ValueError(
                    f"attention transfer: level {level}: student map {tuple(s.shape)} and teacher map "
                    f"{tuple(t.shape)} differ in batch or spatial size"
                )
            a_s = attention_map(s, self.p)
            a_t = attention_map(t.detach(), self.p)
            terms.append((a_s - a_t).pow(2).mean())
        return self.weight * torch.stack(terms).mean()


def build_attention_transfer(*, weight: float = 1.0, p: float = 2.0) -> AttentionTransferLoss:
    """Attention-transfer loss (``msad.distill_losses`` plugin ``attention``).

    Recipe use::

        [distill.loss]
        name = "attention"
        weight = 1.0
        p = 2.0

    Args:
        weight: loss weight (must be ≥ 0).
        p: exponent of ``|F|`` in the attention map (must be > 0; 2 in the paper).
    """
    if weight < 0:
        raise ValueError(f"weight must be non-negative, got {weight}")
    if p <= 0:
        raise ValueError(f"p must be positive, got {p}")
    return AttentionTransferLoss(weight=weight, p=p)
