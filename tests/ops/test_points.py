"""Point locations: exact coordinates, order, multi-level concatenation."""

import math

import pytest
import torch

from msad.ops.points import points_for_level, points_for_levels


def test_stride8_2x3_exact():
    pts = points_for_level(2, 3, 8)
    # x = j*8 + 4, y = i*8 + 4, row-major (i over rows)
    expected = torch.tensor([[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]], dtype=torch.float32)
    assert pts.dtype == torch.float32
    torch.testing.assert_close(pts, expected)


def test_odd_stride_uses_floor_half():
    pts = points_for_level(1, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(pts, torch.tensor([[1.0, 1.0], [4.0, 1.0]], dtype=torch.float64))


def test_points_for_levels_concat_strides_ranges():
    ps = points_for_levels({"p3": (2, 3), "p4": (1, 2)}, {"p3": 8, "p4": 16})
    assert ps.points.shape == (8, 2)
    torch.testing.assert_close(ps.points[6:], torch.tensor([[8.0, 8.0], [24.0, 8.0]]))
    assert ps.strides.tolist() == [8.0] * 6 + [16.0] * 2
    assert ps.ranges[0].tolist() == [-1.0, 64.0]
    assert ps.ranges[-1].tolist() == [64.0, 128.0]


def test_points_for_levels_custom_ranges_and_unknown_level():
    ps = points_for_levels({"p7": (1, 1)}, {"p7": 128})
    assert ps.ranges[0, 0].item() == 512.0 and math.isinf(ps.ranges[0, 1].item())
    with pytest.raises(ValueError, match="p2"):
        points_for_levels({"p2": (1, 1)}, {"p2": 4})
    ps = points_for_levels({"p2": (1, 1)}, {"p2": 4}, {"p2": (0.0, 32.0)})
    assert ps.ranges.tolist() == [[0.0, 32.0]]
