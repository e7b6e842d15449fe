"""FCOS head: initialisation, per-level scales, output contract."""

import math

import pytest
import torch

from msad.models.fcos_head import build_fcos_head
from msad.ops.losses import giou_loss_ltrb


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
    with pytest.raises(ValueError, match="box_init must be one of 'normal', 'half_normal'"):
        build_fcos_head(in_channels=8, num_classes=2, levels=["p3"], box_init="uniform")


def _heads(seed: int) -> dict[str, torch.nn.Module]:
    heads = {}
    for box_init in ("normal", "half_normal"):
        torch.manual_seed(seed)
        heads[box_init] = build_fcos_head(in_channels=32, num_classes=3, levels=["p3"], num_convs=2, box_init=box_init)
    return heads


def test_half_normal_box_init_is_the_absolute_value_of_the_reference_draw_and_touches_nothing_else():
    heads = _heads(0)
    normal, half = heads["normal"].state_dict(), heads["half_normal"].state_dict()
    torch.manual_seed(0)
    default = build_fcos_head(in_channels=32, num_classes=3, levels=["p3"], num_convs=2).state_dict()
    torch.testing.assert_close(default, half)  # msad's default; the paper recipes ask for the reference's draw
    assert (normal["box_pred.weight"] < 0).any()
    torch.testing.assert_close(half["box_pred.weight"], normal["box_pred.weight"].abs())
    for name in normal:
        if name != "box_pred.weight":
            torch.testing.assert_close(half[name], normal[name], msg=name)


def _dead_box_channels_and_grad(head: torch.nn.Module) -> tuple[int, torch.Tensor]:
    """Box channels that are 0 at every location of a constant map, and the GIoU gradient reaching the box layer."""
    x = torch.ones(1, 32, 6, 6)  # a flat map: every location has the same features, as from an untrained backbone
    box = head({"p3": x})["p3"].box_regression
    dead = int((box.flatten(2) == 0).all(dim=2).sum())
    pred = box.permute(0, 2, 3, 1).reshape(-1, 4)
    giou_loss_ltrb(pred, torch.full_like(pred, 2.0)).backward()
    return dead, head.box_pred.weight.grad


def test_half_normal_box_init_starts_every_box_channel_alive():
    """With the reference's zero-mean draw a box channel can start at 0 everywhere (the ReLU then cuts its gradient
    for good); the half-normal draw starts every output > 0, so every box weight gets a gradient."""
    seed = next(s for s in range(100) if _dead_box_channels_and_grad(_heads(s)["normal"])[0] > 0)
    dead, grad = _dead_box_channels_and_grad(_heads(seed)["normal"])
    assert (grad.flatten(1).abs().sum(dim=1) == 0).sum() == dead  # a dead channel's weights get no gradient
    head = _heads(seed)["half_normal"]
    assert (head({"p3": torch.randn(2, 32, 6, 6)})["p3"].box_regression > 0).all()
    dead, grad = _dead_box_channels_and_grad(head)
    assert dead == 0 and (grad.flatten(1).abs().sum(dim=1) > 0).all()
