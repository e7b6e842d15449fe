"""FCOS head: initialisation, per-level scales, output contract."""

import math

import pytest
import torch

from msad.models.fcos_head import build_fcos_head


def test_init_prior_and_no_bias_layers():
    head = build_fcos_head(in_channels=32, num_classes=5, levels=["p3", "p4"], num_convs=2)
    assert torch.allclose(head.cls_logits.bias, torch.full((5,), -math.log(99.0)))
    assert head.box_pred.bias is None and head.centerness.bias is None
    norms = [m for m in head.cls_tower if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 2 and norms[0].num_groups == 32


def test_outputs_and_scale_per_level():
    head = build_fcos_head(in_channels=32, num_classes=5, levels=["p3", "p4"], num_convs=1)
    x = torch.randn(2, 32, 8, 8)
    out = head({"p3": x, "p4": x})
    assert out["p3"].cls_logits.shape == (2, 5, 8, 8)
    assert out["p3"].box_regression.shape == (2, 4, 8, 8)
    assert out["p3"].centerness.shape == (2, 1, 8, 8)
    assert (out["p3"].box_regression >= 0).all()
    with torch.no_grad():
        head.scales["p4"].fill_(2.0)
    out = head({"p3": x, "p4": x})
    torch.testing.assert_close(out["p4"].box_regression, 2 * out["p3"].box_regression)
    torch.testing.assert_close(out["p4"].cls_logits, out["p3"].cls_logits)


def test_unknown_level_and_bad_options():
    head = build_fcos_head(in_channels=8, num_classes=2, levels=["p3"], num_convs=0)
    with pytest.raises(ValueError, match="p2"):
        head({"p2": torch.zeros(1, 8, 2, 2)})
    with pytest.raises(ValueError, match="prior_prob"):
        build_fcos_head(in_channels=8, num_classes=2, levels=["p3"], prior_prob=1.5)
    with pytest.raises(ValueError, match="norm"):
        build_fcos_head(in_channels=8, num_classes=2, levels=["p3"], norm="bn")
