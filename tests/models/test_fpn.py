"""FPN P2–P7: structure, level selection, top-down arithmetic."""

import pytest
import torch

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
    # Weights set by hand: every 1×1 lateral picks input channel 0, every 3×3 conv is the identity (centre tap),
    # biases 0. Then p_i = res_i[0] + nearest ×2 of p_{i+1}'s lateral sum, p6 = res5[0] at stride 2, p7 = relu(p6) at
    # stride 2: computed here on plain tensors.
    fpn = build_fpn(in_features=IN, out_channels=1)
    with torch.no_grad():
        for conv in fpn.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.zero_()
                conv.bias.zero_()
                k = conv.kernel_size[0] // 2
                conv.weight[0, 0, k, k] = 1.0
    feats = _features(h=64, w=64)
    out = fpn(feats)
    c = {name: f[:, :1] for name, f in feats.items()}
    up = lambda x: x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # noqa: E731
    sum5 = c["res5"]
    sum4 = c["res4"] + up(sum5)
    sum3 = c["res3"] + up(sum4)
    sum2 = c["res2"] + up(sum3)
    for level, expected in (("p5", sum5), ("p4", sum4), ("p3", sum3), ("p2", sum2)):
        torch.testing.assert_close(out[level], expected)
    p6 = c["res5"][..., ::2, ::2]
    torch.testing.assert_close(out["p6"], p6)
    torch.testing.assert_close(out["p7"], torch.relu(p6)[..., ::2, ::2])


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
