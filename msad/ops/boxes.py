"""Conversions between ``(x1, y1, x2, y2)`` boxes and FCOS ``(l, t, r, b)`` distances from a point."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["decode_ltrb", "encode_ltrb", "centerness_target"]


def decode_ltrb(points: Tensor, ltrb: Tensor) -> Tensor:
    """Boxes ``(x - l, y - t, x + r, y + b)`` from points ``[..., 2]`` and distances ``[..., 4]``."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack((x - ltrb[..., 0], y - ltrb[..., 1], x + ltrb[..., 2], y + ltrb[..., 3]), dim=-1)


def encode_ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """Distances ``(x - x1, y - y1, x2 - x, y2 - y)`` of points ``[..., 2]`` to boxes ``[..., 4]`` (broadcast)."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack((x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y), dim=-1)


def centerness_target(ltrb: Tensor) -> Tensor:
    """FCOS centerness ``sqrt(min(l, r)/max(l, r) · min(t, b)/max(t, b))`` of ``[..., 4]`` distances."""
    lr = ltrb[..., [0, 2]]
    tb = ltrb[..., [1, 3]]
    ratio = (lr.min(dim=-1).values / lr.max(dim=-1).values) * (tb.min(dim=-1).values / tb.max(dim=-1).values)
    return torch.sqrt(ratio)
