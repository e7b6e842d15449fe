"""Private BN per resolution: the teacher keeps two statistics sets, each pass uses its own, the student gets LR's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from msad.levels import LevelPairing
from msad.models.backbones.slimmable_resnet import build_slimmable_resnet
from msad.models.detector import FCOS, downscale_nearest
from msad.models.fcos_head import build_fcos_head
from msad.models.fpn import build_fpn
from msad.models.fusion import CrossFeatureFusion
from msad.models.resolution_bn import (
    ResolutionBatchNorm,
    collapse_resolution_bn,
    convert_to_resolution_bn,
    use_resolution,
)
from msad.models.student import student_from_teacher
from msad.models.teacher import AlignedMultiScaleTeacher
from msad.structures import FeatureInfo


class BNBackbone(nn.Module):
    """Four strided conv + BN stages producing res2…res5."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        strides = [4, 2, 2, 2]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, strides[i], 1, bias=False), nn.BatchNorm2d(chans[i + 1]))
            for i in range(4)
        )
        self.feature_info = [FeatureInfo(f"res{i + 2}", chans[i + 1], 2 ** (i + 2)) for i in range(4)]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, stage in enumerate(self.stages):
            x = torch.relu(stage(x))
            out[f"res{i + 2}"] = x
        return out


def _teacher(backbone: nn.Module) -> AlignedMultiScaleTeacher:
    neck = build_fpn(in_features=backbone.feature_info, out_channels=8)
    head = build_fcos_head(in_channels=8, num_classes=3, levels=["p3", "p4", "p5", "p6", "p7"], num_convs=1)
    detector = FCOS(backbone=backbone, neck=neck, head=head)
    return AlignedMultiScaleTeacher(detector=detector, fusion=CrossFeatureFusion(channels=8, hidden=4), pairing=LevelPairing())


def _bn_stats(module: nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_private_bn_teacher_keeps_two_statistics_sets_each_updated_by_its_own_pass() -> None:
    torch.manual_seed(0)
    plain = BNBackbone()
    teacher = _teacher(convert_to_resolution_bn(copy.deepcopy(plain))).train()
    norms = [m for m in teacher.modules() if isinstance(m, ResolutionBatchNorm)]
    assert len(norms) == 4 and all(set(m.bns) == {"hr", "lr"} for m in norms)
    hr = torch.randn(2, 3, 128, 128) * 3 + 1
    teacher(hr)
    # what a plain backbone's BN accumulates from one pass over the HR batch, and over its LR copy
    expected_hr, expected_lr = copy.deepcopy(plain).train(), copy.deepcopy(plain).train()
    expected_hr(hr)
    expected_lr(downscale_nearest(hr, 2))
    got_hr = [m.bns["hr"].running_mean for m in norms]
    got_lr = [m.bns["lr"].running_mean for m in norms]
    for got, want in zip(got_hr, _bn_stats(expected_hr), strict=True):
        torch.testing.assert_close(got, want)
    for got, want in zip(got_lr, _bn_stats(expected_lr), strict=True):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(got_hr[1], got_lr[1])  # two sets, not one updated twice
    assert all(m.active == "hr" for m in norms)  # the switch is restored after the pass


def test_private_bn_teacher_uses_the_lr_set_for_the_lr_branch_only() -> None:
    torch.manual_seed(0)
    teacher = _teacher(convert_to_resolution_bn(BNBackbone())).eval()
    hr = torch.randn(1, 3, 128, 128)
    before = teacher(hr, branches=())
    for m in teacher.modules():
        if isinstance(m, ResolutionBatchNorm):
            m.bns["lr"].running_mean.add_(5.0)  # change only the LR statistics
    after = teacher(hr, branches=())
    for lvl in before.hr_features:
        torch.testing.assert_close(after.hr_features[lvl], before.hr_features[lvl])
        assert not torch.allclose(after.lr_features[lvl], before.lr_features[lvl])


def test_student_of_a_private_bn_teacher_uses_the_lr_set() -> None:
    torch.manual_seed(0)
    teacher = _teacher(convert_to_resolution_bn(BNBackbone())).train()
    teacher(torch.randn(2, 3, 128, 128) * 2)  # the two sets now differ
    teacher.eval()
    student = student_from_teacher(teacher).eval()
    assert not any(isinstance(m, ResolutionBatchNorm) for m in student.modules())
    assert "stages.0.1.running_mean" in student.backbone.state_dict()  # plain BN keys
    hr = torch.randn(1, 3, 256, 256)
    _, features = student(downscale_nearest(hr, 2), with_features=True)
    lr_features = teacher(hr, branches=()).lr_features
    for lvl in teacher.strides:
        torch.testing.assert_close(features[lvl], lr_features[lvl])


def test_convert_and_collapse_keep_slimmable_switchable_bn() -> None:
    backbone = build_slimmable_resnet(width=0.25, widths=(0.25, 0.5))
    keys = set(backbone.state_dict())
    converted = convert_to_resolution_bn(copy.deepcopy(backbone))
    assert "stem.bn.bns.0.bns.lr.running_var" in converted.state_dict()
    assert set(collapse_resolution_bn(converted, "lr").state_dict()) == keys
    assert convert_to_resolution_bn(build_slimmable_resnet(width=0.25, norm="frozen_bn")).state_dict().keys() == set(
        build_slimmable_resnet(width=0.25, norm="frozen_bn").state_dict()
    )  # frozen BN has fixed statistics: left shared


def test_use_resolution_checks_its_argument() -> None:
    with pytest.raises(ValueError, match="resolution must be one of"):
        with use_resolution(BNBackbone(), "mid"):
            pass
    with pytest.raises(ValueError, match="resolution must be one of"):
        collapse_resolution_bn(BNBackbone(), "mid")
