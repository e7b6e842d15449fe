"""BatchNorm folding for inference: the folded model computes what the original computes in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from msad.models.backbones.slimmable_resnet import SlimmableResNet, build_slimmable_resnet
from msad.models.fold import fold_batchnorm, has_batchnorm
from msad.models.resolution_bn import convert_to_resolution_bn


def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so that folding has something to get wrong."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.mark.parametrize("width", [0.25, 0.5])
def test_folded_slimmable_backbone_equals_unfolded_at_the_active_width(width: float) -> None:
    torch.manual_seed(0)
    model = build_slimmable_resnet(width=width, widths=(0.25, 0.5))
    _randomise_bn(model)
    model.eval()
    folded = fold_batchnorm(model)
    assert not has_batchnorm(folded) and has_batchnorm(model)
    assert not any(isinstance(m, SlimmableResNet) for m in folded.modules())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert want.keys() == got.keys()
    for name in want:
        assert got[name].shape == want[name].shape
        scale = want[name].abs().max().item()  # deep random features grow large: compare to their scale
        assert (got[name] - want[name]).abs().max().item() <= 1e-4 * max(1.0, scale), name


def test_fold_leaves_the_original_and_per_resolution_bn_alone() -> None:
    backbone = convert_to_resolution_bn(build_slimmable_resnet(width=0.25))
    detector = nn.ModuleDict({"backbone": backbone})
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    folded = fold_batchnorm(detector)
    assert has_batchnorm(folded)  # one conv serves the HR and the LR BN: nothing to fold them into
    assert all(torch.equal(before[k], v) for k, v in detector.state_dict().items())
