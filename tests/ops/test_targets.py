"""FCOS target assignment against hand-computed expectations.

Single-level fixture: stride 8, 4×4 map → points x, y ∈ {4, 12, 20, 28}; index = 4·i + j.
"""

import torch

from msad.ops.boxes import centerness_target, decode_ltrb, encode_ltrb
from msad.ops.points import points_for_level, points_for_levels
from msad.ops.targets import assign_targets, assign_targets_batch
from msad.structures import Target

NC = 3


def _level(h=4, w=4, stride=8, lo=-1.0, hi=64.0):
    pts = points_for_level(h, w, stride)
    n = pts.shape[0]
    return pts, torch.full((n,), float(stride)), torch.tensor([[lo, hi]]).expand(n, 2)


def _assign(boxes, labels, level=None, **kw):
    pts, strides, ranges = level or _level()
    return assign_targets(
        pts, strides, ranges, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64), num_classes=NC, **kw,
    )


def test_no_boxes_all_background():
    labels, ltrb = _assign([], [])
    assert labels.dtype == torch.int64
    assert (labels == NC).all() and labels.shape == (16,)
    assert ltrb.shape == (16, 4) and (ltrb == 0).all()


def test_single_box_centre_sampling():
    # Box (0,0,32,32): centre (16,16), radius 1.5*8 = 12 → region (4,4,28,28) (inside the box).
    # Strictly inside: 4 < x < 28 → x ∈ {12, 20}; same for y. Points 4 and 28 are on the border → out,
    # although they are inside the box itself (l = 4 > 0).
    labels, ltrb = _assign([[0, 0, 32, 32]], [2])
    pos = (labels != NC).nonzero().squeeze(1).tolist()
    assert pos == [5, 6, 9, 10]  # (12,12), (20,12), (12,20), (20,20)
    assert (labels[pos] == 2).all()
    expected = torch.tensor([
        [12, 12, 20, 20],  # (12,12): l=12, t=12, r=32-12, b=32-12
        [20, 12, 12, 20],  # (20,12)
        [12, 20, 20, 12],  # (12,20)
        [20, 20, 12, 12],  # (20,20)
    ], dtype=torch.float32)
    torch.testing.assert_close(ltrb[pos], expected)
    assert (ltrb[labels == NC] == 0).all()


def test_without_centre_sampling_radius_large():
    # radius 10 strides: region clipped to the box itself → every point strictly inside the box.
    labels, _ = _assign([[0, 0, 32, 32]], [0], center_radius=10.0)
    assert (labels == 0).all()


def test_overlap_smaller_box_wins():
    # A = (0,0,48,48), area 2304, centre 24 → region (12,12,36,36): x, y ∈ {20, 28}.
    # B = (8,8,24,24), area 256, centre 16 → region (4,4,28,28) clipped to (8,8,24,24): x, y ∈ {12, 20}.
    # Shared point (20,20) = index 10 → B (smaller). A keeps 11 (28,20), 14 (20,28), 15 (28,28).
    for order in (0, 1):
        boxes = [[0, 0, 48, 48], [8, 8, 24, 24]]
        labels_in = [1, 2]
        if order:
            boxes, labels_in = boxes[::-1], labels_in[::-1]
        labels, ltrb = _assign(boxes, labels_in)
        assert {i: labels[i].item() for i in (labels != NC).nonzero().squeeze(1).tolist()} == {
            5: 2, 6: 2, 9: 2, 10: 2, 11: 1, 14: 1, 15: 1,
        }
        torch.testing.assert_close(ltrb[10], torch.tensor([12.0, 12.0, 4.0, 4.0]))  # (20,20) to B
        torch.testing.assert_close(ltrb[15], torch.tensor([28.0, 28.0, 20.0, 20.0]))  # (28,28) to A


def test_equal_area_tie_first_box_wins():
    labels, _ = _assign([[0, 0, 32, 32], [0, 0, 32, 32]], [1, 0])
    assert (labels[[5, 6, 9, 10]] == 1).all()


def test_size_of_interest_bounds_inclusive():
    # Box (0,0,32,32): positives have max(ltrb) = 20 exactly.
    assert (_assign([[0, 0, 32, 32]], [0], level=_level(lo=-1, hi=16))[0] == NC).all()
    assert (_assign([[0, 0, 32, 32]], [0], level=_level(lo=21, hi=64))[0] == NC).all()
    assert (_assign([[0, 0, 32, 32]], [0], level=_level(lo=20, hi=64))[0] != NC).sum() == 4  # >= lo
    assert (_assign([[0, 0, 32, 32]], [0], level=_level(lo=-1, hi=20))[0] != NC).sum() == 4  # <= hi


def test_multilevel_box_goes_to_its_level():
    # p3: 16×16 stride 8 (x = 4 + 8j), p4: 8×8 stride 16 (x = 8 + 16j).
    # Box (0,0,128,128), centre 64.
    #  p3 region (52,52,76,76): points 60, 68; ltrb at (60,60) = (60,60,68,68) → max 68 > 64: none on p3.
    #  p4 region (40,40,88,88): points 56, 72 (40, 88 on border); max 72 ∈ [64,128] → positive.
    ps = points_for_levels({"p3": (16, 16), "p4": (8, 8)}, {"p3": 8, "p4": 16})
    labels, ltrb = assign_targets(
        ps.points, ps.strides, ps.ranges, torch.tensor([[0.0, 0.0, 128.0, 128.0]]), torch.tensor([1]),
        num_classes=NC,
    )
    pos = (labels != NC).nonzero().squeeze(1).tolist()
    assert pos == [256 + 27, 256 + 28, 256 + 35, 256 + 36]
    torch.testing.assert_close(ltrb[256 + 27], torch.tensor([56.0, 56.0, 72.0, 72.0]))


def test_box_smaller_than_stride():
    # (10,10,14,14): region clipped to the box; only the point (12,12) (index 5) is strictly inside.
    labels, ltrb = _assign([[10, 10, 14, 14]], [1])
    assert (labels != NC).nonzero().squeeze(1).tolist() == [5]
    torch.testing.assert_close(ltrb[5], torch.tensor([2.0, 2.0, 2.0, 2.0]))
    # (13,13,15,15) holds no point → nothing.
    assert (_assign([[13, 13, 15, 15]], [1])[0] == NC).all()


def test_batch_helper():
    pts, strides, ranges = _level()
    targets = [
        Target(torch.tensor([[0.0, 0.0, 32.0, 32.0]]), torch.tensor([2])),
        Target(torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64)),
    ]
    labels, ltrb = assign_targets_batch(pts, strides, ranges, targets, num_classes=NC)
    assert labels.shape == (2, 16) and ltrb.shape == (2, 16, 4)
    assert (labels[0] != NC).sum() == 4 and (labels[1] == NC).all()


def test_box_helpers():
    pts = torch.tensor([[10.0, 20.0]])
    ltrb = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    boxes = decode_ltrb(pts, ltrb)
    torch.testing.assert_close(boxes, torch.tensor([[9.0, 18.0, 13.0, 24.0]]))
    torch.testing.assert_close(encode_ltrb(pts, boxes), ltrb)
    torch.testing.assert_close(centerness_target(ltrb), torch.tensor([(1 / 3 * 2 / 4) ** 0.5]))
