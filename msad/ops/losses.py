"""FCOS losses (AdelaiDet ``FCOSOutputs.losses``): sigmoid focal, GIoU on ``ltrb`` and centerness BCE.

Normalisers follow AdelaiDet: the classification and centerness losses are divided by the number of
positive points averaged over ranks (at least 1); the GIoU loss is weighted by the centerness targets and
divided by their sum averaged over ranks (at least 1e-6). Regression targets are divided by the stride of
their point's level (``NORM_REG_TARGETS``), matching the head's box output in stride units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from msad.levels import SIZES_OF_INTEREST
from msad.ops.boxes import centerness_target
from msad.ops.points import points_for_levels
from msad.ops.targets import assign_targets_batch
from msad.structures import LevelOutputs, Target

__all__ = ["sigmoid_focal_loss", "giou_loss_ltrb", "FCOSTargets", "FCOSCriterion"]


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Summed sigmoid focal loss (Lin et al.; fvcore's ``sigmoid_focal_loss`` with ``reduction="sum"``).

    Args:
        logits: raw scores, any shape.
        targets: same shape, values in ``[0, 1]``.
        alpha: weight of positives (``1 - alpha`` for negatives); negative disables it.
        gamma: focusing exponent.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum()


def giou_loss_ltrb(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Summed GIoU loss of ``[K, 4]`` ``(l, t, r, b)`` distances from shared points (AdelaiDet ``IOULoss("giou")``).

    IoU carries a +1 smoothing: ``(inter + 1) / (union + 1)``; the enclosing area gets ``+1e-7``.
    ``weight`` (``[K]``) multiplies each term before the sum.
    """
    pl, pt, pr, pb = pred.unbind(dim=-1)
    tl, tt, tr, tb = target.unbind(dim=-1)
    pred_area = (pl + pr) * (pt + pb)
    target_area = (tl + tr) * (tt + tb)
    w_int = torch.minimum(pl, tl) + torch.minimum(pr, tr)
    h_int = torch.minimum(pt, tt) + torch.minimum(pb, tb)
    g_w = torch.maximum(pl, tl) + torch.maximum(pr, tr)
    g_h = torch.maximum(pt, tt) + torch.maximum(pb, tb)
    ac_union = g_w * g_h + 1e-7
    inter = w_int * h_int
    union = target_area + pred_area - inter
    iou = (inter + 1.0) / (union + 1.0)
    giou = iou - (ac_union - union) / ac_union
    loss = 1 - giou
    if weight is not None:
        loss = loss * weight
    return loss.sum()


def _mean_over_ranks(values: Tensor) -> Tensor:
    """Mean of (detached) values over ranks in one all-reduce; the values themselves without a process group."""
    values = values.detach().clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values = values / dist.get_world_size()
    return values


def _flatten(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` → ``[B, H·W, C]`` (row-major points, as :func:`points_for_level`)."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


class FCOSTargets(NamedTuple):
    """FCOS targets of one batch, assigned once and shared by every set of head outputs of the same map sizes
    (the teacher's HR, LR and fused branches). Flattened over images and points (``B·N``).

    Attributes:
        shapes: ``(h, w)`` of each level's map the targets were assigned for.
        labels: ``[B·N]`` int64 labels, ``num_classes`` for background.
        positive: ``[B·N]`` bool, the foreground points.
        reg_targets: ``[B·N, 4]`` ``(l, t, r, b)`` in stride units (zeros on background).
        ctr_targets: ``[B·N]`` centerness targets (zeros on background).
        num_pos_avg: rank-averaged number of positives, at least 1 (normaliser of the cls and ctr losses).
        ctr_norm: rank-averaged sum of the centerness targets, at least 1e-6 (normaliser of the box loss).
    """

    shapes: dict[str, tuple[int, int]]
    labels: Tensor
    positive: Tensor
    reg_targets: Tensor
    ctr_targets: Tensor
    num_pos_avg: Tensor
    ctr_norm: Tensor


class FCOSCriterion(nn.Module):
    """FCOS training losses of one set of head outputs.

    Args:
        num_classes: number of object classes.
        focal_alpha: focal loss α.
        focal_gamma: focal loss γ.
        center_radius: centre-sampling radius in strides.
        sizes_of_interest: level → ``(lo, hi)`` on ``max(l, t, r, b)``; defaults to
            :data:`msad.levels.SIZES_OF_INTEREST`.
        levels: levels of the outputs to use, in order; default every level of the outputs.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        center_radius: float = 1.5,
        sizes_of_interest: Mapping[str, tuple[float, float]] | None = None,
        levels: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be ≥ 1, got {num_classes}")
        self.num_classes = num_classes
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.center_radius = center_radius
        self.sizes_of_interest = dict(SIZES_OF_INTEREST if sizes_of_interest is None else sizes_of_interest)
        self.levels = None if levels is None else tuple(levels)
        if self.levels is not None:
            missing = [lvl for lvl in self.levels if lvl not in self.sizes_of_interest]
            if missing:
                raise ValueError(f"no size of interest for levels {missing}")

    def levels_of(self, outputs: Mapping[str, LevelOutputs]) -> tuple[str, ...]:
        """The levels of ``outputs`` the losses use (``self.levels``, or all of them)."""
        levels = tuple(outputs) if self.levels is None else self.levels
        missing = [lvl for lvl in levels if lvl not in outputs]
        if missing:
            raise ValueError(f"outputs lack levels {missing} (have {list(outputs)})")
        return levels

    def assign(
        self, outputs: Mapping[str, LevelOutputs], targets: Sequence[Target], strides: Mapping[str, int]
    ) -> FCOSTargets:
        """Assign ``targets`` to the points of ``outputs``' maps (only their shapes and device are read).

        The rank-averaged normalisers are computed here, in one all-reduce, so that every set of outputs
        scored against these targets shares them.
        """
        levels = self.levels_of(outputs)
        first = outputs[levels[0]].cls_logits
        if len(targets) != first.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {first.shape[0]} images")
        device = first.device
        with torch.autocast(device_type=device.type, enabled=False):
            shapes = {lvl: tuple(outputs[lvl].cls_logits.shape[-2:]) for lvl in levels}
            pts = points_for_levels(shapes, strides, self.sizes_of_interest, device=device)
            labels, ltrb = assign_targets_batch(
                pts.points, pts.strides, pts.ranges, [t.to(device) for t in targets],
                num_classes=self.num_classes, center_radius=self.center_radius,
            )
            labels = labels.reshape(-1)
            positive = labels != self.num_classes
            reg = (ltrb / pts.strides[None, :, None]).reshape(-1, 4)  # stride units
            safe = torch.where(positive[:, None], reg, torch.ones_like(reg))  # background would divide 0 by 0
            ctr = torch.where(positive, centerness_target(safe), torch.zeros_like(reg[:, 0]))
            sums = _mean_over_ranks(torch.stack((positive.sum().float(), ctr.sum())))
        return FCOSTargets(shapes, labels, positive, reg, ctr, sums[0].clamp(min=1.0), sums[1].clamp(min=1e-6))

    def forward(
        self,
        outputs: Mapping[str, LevelOutputs],
        targets: Sequence[Target],
        strides: Mapping[str, int],
        *,
        assigned: FCOSTargets | None = None,
    ) -> dict[str, Tensor]:
        """Losses ``{"loss_cls", "loss_box", "loss_ctr"}`` (float32 scalars) of ``outputs`` against ``targets``.

        Args:
            outputs: head outputs per level (box regression in stride units).
            targets: one :class:`Target` per image, boxes in the frame of ``strides``.
            strides: stride of each level in that frame.
            assigned: targets already assigned by :meth:`assign` for maps of the same sizes (then ``targets``
                and ``strides`` are not read again).

        No host synchronisation: positives are selected by masks, not by ``nonzero()``.
        """
        levels = self.levels_of(outputs)
        first = outputs[levels[0]].cls_logits
        if first.shape[1] != self.num_classes:
            raise ValueError(f"cls_logits have {first.shape[1]} classes, criterion expects {self.num_classes}")
        if assigned is None:
            assigned = self.assign(outputs, targets, strides)
        shapes = {lvl: tuple(outputs[lvl].cls_logits.shape[-2:]) for lvl in levels}
        if shapes != assigned.shapes:
            raise ValueError(f"targets were assigned for maps {assigned.shapes}, the outputs have {shapes}")
        with torch.autocast(device_type=first.device.type, enabled=False):
            cls = torch.cat([_flatten(outputs[lvl].cls_logits.float()) for lvl in levels], dim=1)
            box = torch.cat([_flatten(outputs[lvl].box_regression.float()) for lvl in levels], dim=1).reshape(-1, 4)
            ctr = torch.cat([_flatten(outputs[lvl].centerness.float()) for lvl in levels], dim=1).reshape(-1)
            positive = assigned.positive
            cls = cls.reshape(-1, self.num_classes)
            classes = torch.arange(self.num_classes, device=cls.device)
            cls_target = (assigned.labels[:, None] == classes).to(cls.dtype)  # one-hot; background rows all zero
            loss_cls = sigmoid_focal_loss(cls, cls_target, self.focal_alpha, self.focal_gamma) / assigned.num_pos_avg
            # background terms are zero-weighted; their inputs are zeroed too, so that no inf/NaN leaks in
            box_pos = torch.where(positive[:, None], box, torch.zeros_like(box))
            ctr_pos = torch.where(positive, ctr, torch.zeros_like(ctr))
            loss_box = giou_loss_ltrb(box_pos, assigned.reg_targets, assigned.ctr_targets) / assigned.ctr_norm
            loss_ctr = F.binary_cross_entropy_with_logits(
                ctr_pos, assigned.ctr_targets, weight=positive.to(ctr.dtype), reduction="sum"
            ) / assigned.num_pos_avg
        return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_ctr": loss_ctr}
