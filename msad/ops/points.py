"""FCOS point locations: the image-frame centre of every feature-map cell.

A cell ``(i, j)`` of a level with stride ``s`` sits at ``(x, y) = (j·s + s//2, i·s + s//2)`` (AdelaiDet's
``compute_locations``). Points are listed row-major (``i`` over rows, ``j`` over columns), the order in which
a ``[B, C, H, W]`` map flattens after ``permute(0, 2, 3, 1)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from msad.levels import SIZES_OF_INTEREST

__all__ = ["PointSet", "points_for_level", "points_for_levels"]


class PointSet(NamedTuple):
    """Points of several levels, concatenated in level order.

    Attributes:
        points: ``[N, 2]`` ``(x, y)`` locations in pixels of the target frame.
        strides: ``[N]`` stride of the level each point belongs to.
        ranges: ``[N, 2]`` ``(lo, hi)`` size of interest of that level, on ``max(l, t, r, b)``.
    """

    points: Tensor
    strides: Tensor
    ranges: Tensor


def points_for_level(
    height: int,
    width: int,
    stride: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Locations of an ``height × width`` map of stride ``stride``.

    Returns:
        ``[height·width, 2]`` tensor of ``(x, y) = (j·stride + stride//2, i·stride + stride//2)``, row-major.
    """
    offset = stride // 2
    xs = torch.arange(width, device=device, dtype=dtype) * stride + offset
    ys = torch.arange(height, device=device, dtype=dtype) * stride + offset
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1)


def points_for_levels(
    shapes: Mapping[str, tuple[int, int]],
    strides: Mapping[str, int],
    sizes_of_interest: Mapping[str, tuple[float, float]] | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> PointSet:
    """Points of every level in ``shapes`` (in its order), with their strides and sizes of interest.

    Args:
        shapes: level name → ``(height, width)`` of its feature map.
        strides: level name → stride in pixels of the target frame.
        sizes_of_interest: level name → ``(lo, hi)``; defaults to :data:`msad.levels.SIZES_OF_INTEREST`.
        device: device of the returned tensors.
        dtype: floating dtype of the returned tensors.
    """
    soi = SIZES_OF_INTEREST if sizes_of_interest is None else sizes_of_interest
    missing = [lvl for lvl in shapes if lvl not in soi or lvl not in strides]
    if missing:
        raise ValueError(f"levels {missing} lack a stride or a size of interest (have strides for {list(strides)})")
    points, point_strides, ranges = [], [], []
    for lvl, (height, width) in shapes.items():
        pts = points_for_level(height, width, strides[lvl], device=device, dtype=dtype)
        points.append(pts)
        point_strides.append(torch.full((pts.shape[0],), float(strides[lvl]), device=device, dtype=dtype))
        lo, hi = soi[lvl]
        n = pts.shape[0]  # filled from Python numbers: no host-to-device copy
        ranges.append(torch.stack((torch.full((n,), float(lo), device=device, dtype=dtype),
                                   torch.full((n,), float(hi), device=device, dtype=dtype)), dim=1))
    if not points:
        empty = torch.zeros((0,), device=device, dtype=dtype)
        return PointSet(empty.reshape(0, 2), empty, empty.reshape(0, 2))
    return PointSet(torch.cat(points), torch.cat(point_strides), torch.cat(ranges))
