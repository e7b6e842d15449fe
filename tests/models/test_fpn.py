"""FPN P2–P7: structure, level selection, top-down arithmetic."""

import pytest
import torch
import torch.nn.functional as F

from msad.models.fpn import build_fpn
from msad.structures import FeatureInfo

IN = [FeatureInfo("res2", 8, 4), FeatureInfo("res3", 16, 8), FeatureInfo("res4", 32, 16), FeatureInfo("res5", 64, 32)]


def _features(h: int = 128, w: int = 256) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f.name: torch.randn(2, f.channels, h // f.stride, w // f.stride, generator=g) for f in IN}


def test_shapes_and_feature_info():
    fpn = build_fpn(in_features=IN, out_channels=16)
    out = fpn(_features())
    assert list(out) == ["p2", "p3", "p4", "p5", "p6", "p7"]
    for info in fpn.feature_info:
        assert out[info.name].shape == (2, 16, 128 // info.stride, 256 // info.stride)


def test_requested_levels_match_full_computation():
    fpn = build_fpn(in_features=IN, out_channels=16)
    feats = _features()
    full = fpn(feats)
    part = fpn(feats, ["p3", "p7"])
    assert list(part) == ["p3", "p7"]
    torch.testing.assert_close(part["p3"], full["p3"])
    torch.testing.assert_close(part["p7"], full["p7"])


def test_top_down_sum_and_p6_p7_from_res5():
    fpn = build_fpn(in_features=IN, out_channels=16)
    feats = _features()
    out = fpn(feats)
    lat5 = fpn.lateral["p5"](feats["res5"])
    lat4 = fpn.lateral["p4"](feats["res4"]) + F.interpolate(lat5, scale_factor=2, mode="nearest")
    torch.testing.assert_close(out["p4"], fpn.output["p4"](lat4))
    p6 = fpn.p6(feats["res5"])
    torch.testing.assert_close(out["p6"], p6)
    torch.testing.assert_close(out["p7"], fpn.p7(torch.relu(p6)))


def test_no_norm_layers_and_bad_levels():
    fpn = build_fpn(in_features=IN, out_channels=16)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in fpn.modules())
    with pytest.raises(ValueError, match="p8"):
        build_fpn(in_features=IN, levels=["p8"])
    with pytest.raises(ValueError, match="res2"):
        build_fpn(in_features=IN[1:], levels=["p2", "p3"])
    hr_only = build_fpn(in_features=IN, out_channels=16, levels=["p3", "p4", "p5", "p6", "p7"])
    with pytest.raises(ValueError, match="does not produce"):
        hr_only(_features(), ["p2"])
