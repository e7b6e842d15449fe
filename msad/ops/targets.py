"""FCOS target assignment (AdelaiDet ``compute_targets_for_locations`` with centre sampling).

A point is a candidate for a ground-truth box when

* it lies strictly inside the box's *sample region*: the square of half-size ``center_radius · stride``
  (stride of the point's level) centred on the box centre, clipped to the box; and
* the largest of its distances ``max(l, t, r, b)`` to the box lies in its level's size of interest
  ``[lo, hi]`` (both ends inclusive).

Among several candidate boxes the one with the smallest area wins (ties: the first box). Points with no
candidate are background, labelled ``num_classes``. Everything is vectorised over points × boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from msad.ops.boxes import encode_ltrb
from msad.structures import Target

__all__ = ["assign_targets", "assign_targets_batch"]


def assign_targets(
    points: Tensor,
    point_strides: Tensor,
    point_ranges: Tensor,
    boxes: Tensor,
    labels: Tensor,
    *,
    num_classes: int,
    center_radius: float = 1.5,
) -> tuple[Tensor, Tensor]:
    """Assign one image's boxes to points.

    Args:
        points: ``[N, 2]`` ``(x, y)`` locations in pixels.
        point_strides: ``[N]`` stride of each point's level.
        point_ranges: ``[N, 2]`` ``(lo, hi)`` size of interest of each point's level.
        boxes: ``[M, 4]`` ``(x1, y1, x2, y2)`` ground-truth boxes in pixels.
        labels: ``[M]`` int64 labels in ``[0, num_classes)``.
        num_classes: number of classes; the background label.
        center_radius: half-size of the sample region in strides.

    Returns:
        ``labels`` ``[N]`` int64 (``num_classes`` = background) and ``ltrb`` ``[N, 4]`` distances in pixels
        of each point to its assigned box (zeros for background points).
    """
    num_points = points.shape[0]
    if boxes.numel() == 0:
        return (
            torch.full((num_points,), num_classes, dtype=torch.int64, device=points.device),
            points.new_zeros((num_points, 4)),
        )
    boxes = boxes.to(device=points.device, dtype=points.dtype)
    labels = labels.to(device=points.device, dtype=torch.int64)

    ltrb = encode_ltrb(points[:, None, :], boxes[None, :, :])  # [N, M, 4]

    # Sample region: box centre ± radius·stride, clipped to the box.
    centre = (boxes[:, :2] + boxes[:, 2:]) * 0.5  # [M, 2]
    radius = (point_strides * center_radius)[:, None, None]  # [N, 1, 1]
    region_lo = torch.maximum(centre[None] - radius, boxes[None, :, :2])  # [N, M, 2]
    region_hi = torch.minimum(centre[None] + radius, boxes[None, :, 2:])  # [N, M, 2]
    xy = points[:, None, :]
    inside = torch.cat((xy - region_lo, region_hi - xy), dim=2).min(dim=2).values > 0  # [N, M]

    max_dist = ltrb.max(dim=2).values  # [N, M]
    in_range = (max_dist >= point_ranges[:, 0:1]) & (max_dist <= point_ranges[:, 1:2])

    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # [M]
    cost = area[None, :].expand(num_points, -1).masked_fill(~(inside & in_range), float("inf"))  # [N, M]
    best = cost.argmin(dim=1)  # first index among ties
    matched = torch.isfinite(cost.gather(1, best[:, None]).squeeze(1))

    assigned_labels = torch.where(matched, labels[best], torch.full_like(best, num_classes))
    assigned_ltrb = ltrb.gather(1, best[:, None, None].expand(num_points, 1, 4)).squeeze(1)
    assigned_ltrb = torch.where(matched[:, None], assigned_ltrb, torch.zeros_like(assigned_ltrb))
    return assigned_labels, assigned_ltrb


def assign_targets_batch(
    points: Tensor,
    point_strides: Tensor,
    point_ranges: Tensor,
    targets: Sequence[Target],
    *,
    num_classes: int,
    center_radius: float = 1.5,
) -> tuple[Tensor, Tensor]:
    """:func:`assign_targets` for every image of a batch.

    Returns:
        ``labels`` ``[B, N]`` int64 and ``ltrb`` ``[B, N, 4]`` in pixels.
    """
    if not targets:
        return (
            torch.zeros((0, points.shape[0]), dtype=torch.int64, device=points.device),
            points.new_zeros((0, points.shape[0], 4)),
        )
    per_image = [
        assign_targets(
            points,
            point_strides,
            point_ranges,
            target.boxes,
            target.labels,
            num_classes=num_classes,
            center_radius=center_radius,
        )
        for target in targets
    ]
    labels = torch.stack([lab for lab, _ in per_image])
    ltrb = torch.stack([reg for _, reg in per_image])
    return labels, ltrb
