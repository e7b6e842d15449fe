"""Inference precision: folded fp32 equals the trained model; bf16 autocast runs and stays close."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from msad.config import load_recipe
from msad.engine.inference import check_precision, inference_autocast, inference_model
from msad.errors import UsageError
from msad.models.fold import has_batchnorm
from msad.roles import build_model

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.toml"


@pytest.fixture(scope="module")
def detector() -> nn.Module:
    """The tiny recipe's baseline with non-trivial BN statistics, in eval mode."""
    torch.manual_seed(0)
    model = build_model(load_recipe(TINY), role="baseline", num_classes=3)
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _maps(model: nn.Module, x: torch.Tensor, precision: str) -> dict[str, torch.Tensor]:
    with torch.no_grad(), inference_autocast("cpu", precision):
        out = model(x)
    return {f"{lvl}.{name}": getattr(o, name).float() for lvl, o in out.items() for name in ("cls_logits", "box_regression", "centerness")}


def test_fp32_is_the_model_itself_and_bf16_folds_batchnorm(detector: nn.Module) -> None:
    assert inference_model(detector, "fp32") is detector
    folded = inference_model(detector, "bf16")
    assert not has_batchnorm(folded) and has_batchnorm(detector)


def test_folded_head_maps_equal_unfolded_and_bf16_is_close(detector: nn.Module) -> None:
    x = torch.randn(2, 3, 128, 160, generator=torch.Generator().manual_seed(1))
    folded = inference_model(detector, "bf16")
    want = _maps(detector, x, "fp32")
    same = _maps(folded, x, "fp32")
    low = _maps(folded, x, "bf16")
    for key, ref in want.items():
        assert (same[key] - ref).abs().max().item() <= 1e-4, key
        scale = ref.abs().max().item()
        assert (low[key] - ref).abs().max().item() <= 0.05 * max(1.0, scale), key  # bf16: 8 bits of mantissa
    with torch.no_grad(), inference_autocast("cpu", "bf16"):
        assert folded(x)["p3"].cls_logits.dtype == torch.bfloat16  # the bf16 path really ran in bf16


def test_unknown_precision_is_one_clear_error() -> None:
    with pytest.raises(UsageError, match="--precision must be one of fp32, bf16, got 'fp16'"):
        check_precision("fp16")
