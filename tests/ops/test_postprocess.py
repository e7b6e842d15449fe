"""FCOS post-processing on hand-made head outputs.

Level p3, stride 8, 4×4 map: cell (i, j) sits at (x, y) = (8j + 4, 8i + 4). Every logit starts at -10
(sigmoid ≈ 4.5e-5, below the 0.05 threshold); tests raise a few.
"""

import math

import pytest
import torch

from msad.ops.postprocess import FCOSPostProcess
from msad.structures import LevelOutputs

C = 3


def _logit(p):
    return math.log(p / (1 - p))


def _outputs(batch=1, h=4, w=4):
    return LevelOutputs(
        cls_logits=torch.full((batch, C, h, w), -10.0),
        box_regression=torch.ones(batch, 4, h, w),
        centerness=torch.zeros(batch, 1, h, w),
    )


def _set(out, i, j, cls_prob, ctr_prob, ltrb, label=1, b=0):
    out.cls_logits[b, label, i, j] = _logit(cls_prob)
    out.centerness[b, 0, i, j] = _logit(ctr_prob)
    out.box_regression[b, :, i, j] = torch.tensor(ltrb, dtype=torch.float32)


def test_single_detection_exact_box_and_score():
    out = _outputs()
    # Point (i=1, j=2) = (20, 12); ltrb (1, .5, 2, 1) strides = (8, 4, 16, 8) px → box (12, 8, 36, 20).
    _set(out, 1, 2, 0.9, 0.4, [1.0, 0.5, 2.0, 1.0])
    (det,) = FCOSPostProcess()({"p3": out}, {"p3": 8}, [(64, 64)])
    assert det.boxes.shape == (1, 4) and det.labels.tolist() == [1] and det.labels.dtype == torch.int64
    torch.testing.assert_close(det.boxes, torch.tensor([[12.0, 8.0, 36.0, 20.0]]))
    assert det.scores.item() == pytest.approx(math.sqrt(0.9 * 0.4), rel=1e-5)


def test_threshold_on_cls_only():
    out = _outputs()
    _set(out, 0, 0, 0.04, 0.99, [1, 1, 1, 1])  # cls below .05 → dropped despite high ctr
    _set(out, 3, 3, 0.06, 0.01, [1, 1, 1, 1])  # cls above .05 → kept despite low ctr
    (det,) = FCOSPostProcess()({"p3": out}, {"p3": 8}, [(64, 64)])
    torch.testing.assert_close(det.boxes, torch.tensor([[20.0, 20.0, 36.0, 36.0]]))
    assert det.scores.item() == pytest.approx(math.sqrt(0.06 * 0.01), rel=1e-4)


def test_nms_same_class_suppresses_other_class_kept():
    out = _outputs()
    # (i=1,j=1) → (12,12) box (4,4,20,20); (i=1,j=2) → (20,12) with ltrb (2,1,0,1)·8 → (4,4,20,20) too.
    _set(out, 1, 1, 0.9, 0.9, [1, 1, 1, 1], label=0)
    _set(out, 1, 2, 0.8, 0.9, [2, 1, 0, 1], label=0)
    (det,) = FCOSPostProcess()({"p3": out}, {"p3": 8}, [(64, 64)])
    assert len(det.scores) == 1 and det.scores.item() == pytest.approx(0.9, rel=1e-5)
    _set(out, 1, 2, 0.8, 0.9, [2, 1, 0, 1], label=2)
    (det,) = FCOSPostProcess()({"p3": out}, {"p3": 8}, [(64, 64)])
    assert det.labels.tolist() == [0, 2]
    torch.testing.assert_close(det.boxes, torch.tensor([[4.0, 4, 20, 20], [4.0, 4, 20, 20]]))


def test_same_point_two_classes_both_kept():
    out = _outputs()
    _set(out, 2, 2, 0.7, 0.5, [1, 1, 1, 1], label=0)
    out.cls_logits[0, 2, 2, 2] = _logit(0.3)
    (det,) = FCOSPostProcess()({"p3": out}, {"p3": 8}, [(64, 64)])
    assert det.labels.tolist() == [0, 2]
    torch.testing.assert_close(det.scores, torch.tensor([math.sqrt(0.35), math.sqrt(0.15)]))


def test_clip_to_image_and_drop_empty():
    out = _outputs()
    # (28,28) with ltrb (1,1,3,3)·8 → (20,20,52,52), clipped to w=40, h=30 → (20,20,40,30).
    _set(out, 3, 3, 0.9, 0.9, [1, 1, 3, 3])
    # (28,4) with ltrb (0,.25,1,.25)·8 → (28,2,36,6), which lies right of x=26 → empty after clipping to w=26.
    _set(out, 0, 3, 0.8, 0.9, [0, 0.25, 1, 0.25], label=2)
    (det,) = FCOSPostProcess()({"p3": out}, {"p3": 8}, [(30, 40)])
    torch.testing.assert_close(det.boxes, torch.tensor([[20.0, 20, 40, 30], [28.0, 2, 36, 6]]))
    (det,) = FCOSPostProcess()({"p3": out}, {"p3": 8}, [(64, 26)])
    assert det.labels.tolist() == [1]
    torch.testing.assert_close(det.boxes, torch.tensor([[20.0, 20, 26, 52]]))


def _grid_of_candidates(out):
    # 16 disjoint boxes (ltrb 0.25 strides = 2 px) with scores rising with the index.
    for k in range(16):
        _set(out, k // 4, k % 4, 0.5 + 0.03 * k, 0.5, [0.25] * 4)


def test_max_detections_and_pre_nms_topk():
    out = _outputs()
    _grid_of_candidates(out)
    (det,) = FCOSPostProcess(max_detections=3)({"p3": out}, {"p3": 8}, [(64, 64)])
    expected = torch.tensor([math.sqrt((0.5 + 0.03 * k) * 0.5) for k in (15, 14, 13)])
    torch.testing.assert_close(det.scores, expected)
    torch.testing.assert_close(det.boxes[0], torch.tensor([26.0, 26, 30, 30]))  # k=15 at (28,28)
    # top 5 of 16: k = 15 … 11, the lowest cls 0.5 + 0.03·11 = 0.83
    (det,) = FCOSPostProcess(pre_nms_topk=5)({"p3": out}, {"p3": 8}, [(64, 64)])
    assert len(det.scores) == 5 and det.scores.min().item() == pytest.approx(math.sqrt(0.83 * 0.5), rel=1e-5)


def test_batch_and_levels_use_their_strides():
    p3, p4 = _outputs(batch=2), _outputs(batch=2, h=2, w=2)
    _set(p3, 0, 0, 0.9, 0.9, [1, 1, 1, 1], b=0)
    # p4 cell (1,0) → (8, 24); ltrb 1·16 → (-8, 8, 24, 40) → clipped x1 = 0.
    _set(p4, 1, 0, 0.8, 0.8, [1, 1, 1, 1], label=2, b=1)
    dets = FCOSPostProcess()({"p3": p3, "p4": p4}, {"p3": 8, "p4": 16}, [(64, 64), (64, 64)])
    assert len(dets) == 2
    torch.testing.assert_close(dets[0].boxes, torch.tensor([[0.0, 0, 12, 12]]))
    torch.testing.assert_close(dets[1].boxes, torch.tensor([[0.0, 8, 24, 40]]))
    assert dets[1].labels.tolist() == [2]


def test_nothing_above_threshold_gives_empty_detections():
    (det,) = FCOSPostProcess()({"p3": _outputs()}, {"p3": 8}, [(64, 64)])
    assert det.boxes.shape == (0, 4) and det.scores.shape == (0,) and det.labels.dtype == torch.int64


def _overlapping_after_clipping():
    out = _outputs()
    # (20,20) with ltrb (1.25,1.25,2.5,1.25)·8 → A = (10,10,40,30);
    # (28,20) with ltrb (2.25,1.25,6.5,1.25)·8 → B = (10,10,80,30): IoU(A, B) = 600/1400 ≈ 0.43 < 0.6,
    # but clipped to w = 40, B = A (IoU 1).
    _set(out, 2, 2, 0.9, 0.9, [1.25, 1.25, 2.5, 1.25], label=0)
    _set(out, 2, 3, 0.8, 0.9, [2.25, 1.25, 6.5, 1.25], label=0)
    return out


def test_nms_runs_on_unclipped_boxes_by_default():
    (det,) = FCOSPostProcess()({"p3": _overlapping_after_clipping()}, {"p3": 8}, [(64, 40)])
    # Reference order: both survive NMS (unclipped IoU 0.43), then B is clipped onto A.
    torch.testing.assert_close(det.boxes, torch.tensor([[10.0, 10, 40, 30], [10.0, 10, 40, 30]]))
    torch.testing.assert_close(det.scores, torch.tensor([0.9, math.sqrt(0.72)]))
    (old,) = FCOSPostProcess(clip_before_nms=True)({"p3": _overlapping_after_clipping()}, {"p3": 8}, [(64, 40)])
    torch.testing.assert_close(old.boxes, torch.tensor([[10.0, 10, 40, 30]]))


def _best_box_outside_image():
    out = _outputs()
    # (28,4) with ltrb (0,.25,1,.25)·8 → (28,2,36,6): right of x = 26, empty once clipped to w = 26.
    _set(out, 0, 3, 0.95, 0.95, [0, 0.25, 1, 0.25], label=2)
    # (4,12) → (2,10,6,14) and (4,20) → (2,18,6,22): disjoint, inside.
    _set(out, 1, 0, 0.9, 0.9, [0.25] * 4)
    _set(out, 2, 0, 0.8, 0.8, [0.25] * 4)
    return out


def test_top_k_cut_before_dropping_empty_boxes_by_default():
    post = FCOSPostProcess(max_detections=2)
    (det,) = post({"p3": _best_box_outside_image()}, {"p3": 8}, [(64, 26)])
    # Reference order: the cut keeps (outside, 0.9); the outside box is then dropped → fewer than 2.
    torch.testing.assert_close(det.boxes, torch.tensor([[2.0, 10, 6, 14]]))
    assert det.labels.tolist() == [1]
    (old,) = FCOSPostProcess(max_detections=2, clip_before_nms=True)(
        {"p3": _best_box_outside_image()}, {"p3": 8}, [(64, 26)]
    )
    torch.testing.assert_close(old.boxes, torch.tensor([[2.0, 10, 6, 14], [2.0, 18, 6, 22]]))
