"""Slimmable ResNet: widths, switchable BN, slicing to one width, freezing, argument checks."""

import pytest
import torch
from torch import nn

from msad.models.backbones.slimmable_resnet import (
    FrozenBatchNorm2d,
    SlimmableConv2d,
    SlimmableResNet,
    SwitchableBatchNorm2d,
    build_slimmable_resnet,
    slice_to_width,
)

WIDTHS = (0.25, 0.5, 0.75, 1.0)
# Expected R-50 channels per width: res2..res5 = int(256w), int(512w), int(1024w), int(2048w).
CHANNELS = {0.25: (64, 128, 256, 512), 0.5: (128, 256, 512, 1024), 0.75: (192, 384, 768, 1536),
            1.0: (256, 512, 1024, 2048)}


@pytest.fixture(scope="module")
def r50() -> SlimmableResNet:
    torch.manual_seed(0)
    model = build_slimmable_resnet(depth=50, widths=(0.25, 0.5, 0.75, 1.0))
    _randomise_bn(model)
    return model.eval()


def _randomise_bn(model: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("width", WIDTHS)
def test_feature_info_and_shapes_per_width(r50: SlimmableResNet, width: float) -> None:
    r50.set_width(width)
    assert r50.width == width
    info = r50.feature_info
    assert [f.name for f in info] == ["res2", "res3", "res4", "res5"]
    assert [f.stride for f in info] == [4, 8, 16, 32]
    assert tuple(f.channels for f in info) == CHANNELS[width]
    with torch.no_grad():
        out = r50(_x())
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for f in info:
        assert out[f.name].shape == (1, f.channels, 64 // f.stride, 96 // f.stride)
    assert r50.stem.conv.weight.shape == (64, 3, 7, 7)  # full-width storage never changes
    r50.set_width(1.0)


def test_stem_and_bottleneck_channels_at_075() -> None:
    model = build_slimmable_resnet(width=0.75, widths=(0.25, 0.5, 0.75, 1.0))
    stem = model.stem(torch.zeros(1, 3, 32, 32))
    assert stem.shape == (1, 48, 8, 8)
    block = model.res3[0]
    assert block.conv1.out_list == [32, 64, 96, 128]  # mid = out // 4
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)  # stride on the 3×3
    assert block.downsample is not None and model.res3[1].downsample is None
    assert [len(getattr(model, s)) for s in ("res2", "res3", "res4", "res5")] == [3, 4, 6, 3]


def test_out_features_subset() -> None:
    model = build_slimmable_resnet(width=0.25, out_features=("res3", "res4")).eval()
    assert [f.name for f in model.feature_info] == ["res3", "res4"]
    with torch.no_grad():
        out = model(_x())
    assert list(out) == ["res3", "res4"] and out["res4"].shape == (1, 256, 4, 6)


def test_depth_101() -> None:
    with torch.device("meta"):
        model = build_slimmable_resnet(depth=101, width=0.5)
    assert [len(getattr(model, s)) for s in ("res2", "res3", "res4", "res5")] == [3, 4, 23, 3]
    assert [f.channels for f in model.feature_info] == [128, 256, 512, 1024]


def test_switchable_bn_is_private_per_width(r50: SlimmableResNet) -> None:
    bns = [m for m in r50.modules() if isinstance(m, SwitchableBatchNorm2d)]
    assert all(len(m.bns) == 4 and len({id(b) for b in m.bns}) == 4 for m in bns)
    x = _x()
    with torch.no_grad():
        r50.set_width(1.0)
        full_before = r50(x)["res5"].clone()
        r50.set_width(0.5)
        half_before = r50(x)["res5"].clone()
        saved = [(m.bns[1].running_mean.clone(), m.bns[1].running_var.clone()) for m in bns]
        for m in bns:
            m.bns[1].running_mean.add_(0.5)
            m.bns[1].running_var.mul_(2.0)
        half_after = r50(x)["res5"]
        r50.set_width(1.0)
        full_after = r50(x)["res5"]
        for m, (mean, var) in zip(bns, saved, strict=True):
            m.bns[1].running_mean.copy_(mean)
            m.bns[1].running_var.copy_(var)
    torch.testing.assert_close(full_after, full_before, atol=0, rtol=0)
    assert not torch.allclose(half_after, half_before)


def test_training_updates_only_active_width_stats() -> None:
    torch.manual_seed(0)
    model = build_slimmable_resnet(width=0.25, widths=(0.25, 0.5, 0.75, 1.0), out_features=("res2",)).train()
    bn = model.stem.bn
    before = [b.running_mean.clone() for b in bn.bns]
    model(_x())
    assert not torch.equal(bn.bns[0].running_mean, before[0])
    for j in (1, 2, 3):
        assert torch.equal(bn.bns[j].running_mean, before[j])


@pytest.mark.parametrize("width", WIDTHS)
def test_slice_to_width_matches(r50: SlimmableResNet, width: float) -> None:
    r50.set_width(width)
    plain = slice_to_width(r50, width)
    assert not any(isinstance(m, (SlimmableConv2d, SwitchableBatchNorm2d)) for m in plain.modules())
    assert plain.feature_info == r50.feature_info
    assert plain.stem.conv.weight.shape == (int(64 * width), 3, 7, 7)
    assert not plain.training
    x = _x(3)
    with torch.no_grad():
        ref, out = r50(x), plain(x)
    for name in ref:
        torch.testing.assert_close(out[name], ref[name], atol=1e-5, rtol=1e-5)
    r50.set_width(1.0)


def test_frozen_bn_stays_frozen_under_train() -> None:
    torch.manual_seed(0)
    model = build_slimmable_resnet(width=0.25, norm="frozen_bn")
    _randomise_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if "conv" in n)
    x = _x()
    with torch.no_grad():
        eval_out = model.eval()(x)["res5"]
    model.train()
    assert model.training and all(not m.training for m in frozen)
    stats = frozen[0].running_mean.clone()
    train_out = model(x)["res5"]
    torch.testing.assert_close(train_out, eval_out)
    assert torch.equal(frozen[0].running_mean, stats)
    train_out.sum().backward()
    assert model.res5[0].conv1.weight.grad is not None
    plain = slice_to_width(model, 0.25).train()
    assert all(not m.training for m in plain.modules() if isinstance(m, FrozenBatchNorm2d))


def test_freeze_at_2_freezes_stem_and_res2_only() -> None:
    torch.manual_seed(0)
    model = build_slimmable_resnet(width=0.25, freeze_at=2)
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(("stem.", "res2."))), name
    model.train()
    assert not model.stem.training and not model.res2.training and model.res3.training
    res2_stats = model.res2[0].bn1.bns[0].running_mean.clone()
    res3_stats = model.res3[0].bn1.bns[0].running_mean.clone()
    model(_x())
    assert torch.equal(model.res2[0].bn1.bns[0].running_mean, res2_stats)
    assert not torch.equal(model.res3[0].bn1.bns[0].running_mean, res3_stats)
    nothing = build_slimmable_resnet(width=0.25, freeze_at=0)
    assert all(p.requires_grad for p in nothing.parameters())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0.3, "widths": (0.25, 0.5)}, "width 0.3"),
        ({"width": 1.5}, "widths"),
        ({"depth": 34}, "depth"),
        ({"out_features": ("res6",)}, "res6"),
        ({"freeze_at": 6}, "freeze_at"),
        ({"norm": "gn"}, "norm"),
        ({"widths": (0.5, 0.5)}, "widths"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_slimmable_resnet(**kwargs)


def test_builder_is_keyword_only_and_set_width_checks() -> None:
    with pytest.raises(TypeError):
        build_slimmable_resnet(50)  # type: ignore[misc]
    model = build_slimmable_resnet(width=0.5, widths=(0.5, 1.0))
    assert model.width == 0.5 and model.stem.conv.weight.shape[0] == 64
    with pytest.raises(ValueError, match="0.25"):
        model.set_width(0.25)
