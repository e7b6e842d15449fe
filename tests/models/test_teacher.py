"""Aligned multi-scale teacher and student routing: the pairing is pixel-exact and explicit."""

import pytest
import torch

from msad.levels import LevelPairing
from msad.models.detector import FCOS, downscale_nearest
from msad.models.fcos_head import build_fcos_head
from msad.models.fpn import build_fpn
from msad.models.fusion import CrossFeatureFusion
from msad.models.student import student_from_teacher, to_input_frame
from msad.models.teacher import AlignedMultiScaleTeacher
from msad.structures import Detections


def _teacher(backbone) -> AlignedMultiScaleTeacher:
    neck = build_fpn(in_features=backbone.feature_info, out_channels=8)
    head = build_fcos_head(in_channels=8, num_classes=3, levels=["p3", "p4", "p5", "p6", "p7"], num_convs=1)
    detector = FCOS(backbone=backbone, neck=neck, head=head)
    return AlignedMultiScaleTeacher(detector=detector, fusion=CrossFeatureFusion(channels=8, hidden=4), pairing=LevelPairing())


def test_pairing_is_data():
    assert LevelPairing(k=2).lr_for_hr == {"p3": "p2", "p4": "p3", "p5": "p4", "p6": "p5", "p7": "p6"}
    with pytest.raises(ValueError, match="p1"):
        LevelPairing(k=4)


def test_downscale_is_every_second_pixel():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    torch.testing.assert_close(downscale_nearest(x, 2), x[..., ::2, ::2])
    with pytest.raises(ValueError, match="divisible"):
        downscale_nearest(torch.zeros(1, 3, 5, 4), 2)


def test_branches_align_and_fuse(tiny_backbone):
    teacher = _teacher(tiny_backbone).eval()
    hr = torch.randn(2, 3, 256, 512)
    out = teacher(hr)
    for lvl, stride in teacher.strides.items():
        assert out.hr_features[lvl].shape == out.lr_features[lvl].shape == (2, 8, 256 // stride, 512 // stride)
        assert out.fused[lvl].cls_logits.shape == (2, 3, 256 // stride, 512 // stride)
    # LR p2 of the half-size image feeds head level p3
    lr_pyr = teacher.detector.pyramid(hr[..., ::2, ::2], ["p2"])
    torch.testing.assert_close(out.lr_features["p3"], lr_pyr["p2"])
    # each fused level is C-FF (tested on its own in test_fusion) of the HR and LR maps of that head level
    for lvl in teacher.strides:
        torch.testing.assert_close(out.fused_features[lvl], teacher.fusion(out.hr_features[lvl], out.lr_features[lvl]))
    with pytest.raises(ValueError, match="unknown teacher branches"):
        teacher(hr, branches=("mid",))


def test_student_is_teacher_copy_routed_to_lr(tiny_backbone):
    teacher = _teacher(tiny_backbone).eval()
    student = student_from_teacher(teacher).eval()
    hr = torch.randn(1, 3, 256, 256)
    lr = downscale_nearest(hr, 2)
    s_out, s_feats = student(lr, with_features=True)
    t_out = teacher(hr)
    for lvl in teacher.strides:
        torch.testing.assert_close(s_feats[lvl], t_out.lr_features[lvl])
        torch.testing.assert_close(s_out[lvl].cls_logits, t_out.lr[lvl].cls_logits)
    student.backbone.stem.weight.data.zero_()
    assert teacher.detector.backbone.stem.weight.abs().sum() > 0  # a copy, not shared


def test_to_input_frame_divides_by_k():
    det = Detections(torch.tensor([[8.0, 16.0, 32.0, 64.0]]), torch.tensor([0.9]), torch.tensor([1]))
    (out,) = to_input_frame([det], LevelPairing(k=2))
    torch.testing.assert_close(out.boxes, torch.tensor([[4.0, 8.0, 16.0, 32.0]]))
