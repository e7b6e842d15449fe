"""``msad.macs``: multiply-adds from shapes on the meta device, checked against fvcore on real tensors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from msad.config import Recipe
from msad.macs import count_macs, on_meta
from msad.roles import build_model


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key in sorted(value) for t in _tensors(value[key])]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors(item)]
    if hasattr(value, "__dataclass_fields__"):
        return [t for name in value.__dataclass_fields__ for t in _tensors(getattr(value, name))]
    return []


class _Flat(nn.Module):
    """What fvcore can trace: a module returning a tuple of tensors."""

    def __init__(self, model: nn.Module, call) -> None:
        super().__init__()
        self.model, self.call = model, call

    def forward(self, x):
        return tuple(_tensors(self.call(self.model, x)))


def _fvcore(model: nn.Module, call, image: torch.Tensor, *, fold_bn: bool = False) -> float:
    fvcore_nn = pytest.importorskip("fvcore.nn")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        analysis = fvcore_nn.FlopCountAnalysis(_Flat(model, call), image)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        if fold_bn:
            analysis.set_op_handle("aten::batch_norm", lambda inputs, outputs: 0)
        return float(analysis.total())


def test_a_convolution_by_hand() -> None:
    with on_meta():
        conv = nn.Conv2d(3, 8, 3, padding=1, stride=2)
    count = count_macs(conv, torch.empty(2, 3, 32, 32, device="meta"))
    assert count.total == 2 * 8 * 3 * 3 * 3 * 16 * 16
    assert dict(count.by_operator) == {"aten::convolution": count.total}


def test_nothing_is_computed_and_initialisers_are_skipped() -> None:
    with on_meta():
        layer = nn.Linear(4096, 4096)
    assert layer.weight.is_meta
    count = count_macs(layer, torch.empty(3, 4096, device="meta"))
    assert count.total == 3 * 4096 * 4096


CALLS = {
    "baseline": lambda m, x: m(x),
    "student": lambda m, x: m(x),
    "teacher": lambda m, x: m(x, branches=("fused",)).fused,
}


@pytest.mark.parametrize("role", list(CALLS))
def test_detectors_count_as_fvcore_counts(role: str, tiny_recipe: Recipe) -> None:
    size = (1, 3, 128, 192)
    torch.manual_seed(0)
    real = build_model(tiny_recipe, role=role, num_classes=3).eval()
    with on_meta():
        meta = build_model(tiny_recipe, role=role, num_classes=3).eval()
    count = count_macs(lambda x: CALLS[role](meta, x), torch.empty(size, device="meta"), module=meta)
    assert count.total > 0
    assert count.total == _fvcore(real, CALLS[role], torch.zeros(size))
    if role == "teacher":  # C-FF's average pool, softmax and weighting are not counted (as fvcore)
        assert {"aten::mean", "aten::softmax", "aten::mul"} <= set(count.skipped)


def test_folded_batch_norm_and_an_excluded_stem(tiny_recipe: Recipe) -> None:
    image = torch.zeros(1, 3, 64, 96)
    backbone = build_model(tiny_recipe, role="baseline", num_classes=3).eval().backbone
    with on_meta():
        meta = build_model(tiny_recipe, role="baseline", num_classes=3).eval().backbone
    folded = count_macs(meta, image.to("meta"), fold_bn=True, exclude=("stem",))
    assert folded.total + folded.excluded == _fvcore(backbone, lambda m, x: m(x), image, fold_bn=True)
    stem = count_macs(meta.stem, torch.zeros(1, 3, 64, 96, device="meta"), fold_bn=True).total
    assert folded.excluded == stem > 0
    with_bn = count_macs(meta, image.to("meta")).total
    assert with_bn > folded.total + folded.excluded


def test_counting_stays_clear_of_the_compiler_stack() -> None:
    """What keeps `msad flops` instant: no torchvision, torch._dynamo or sympy imported to count (they cost seconds)."""
    code = (
        "import sys\n"
        "from msad import api\n"
        "api.capacity(api.paper_recipe(), widths=(0.25,), image_size=(64, 96))\n"
        "print(sorted(m for m in ('torchvision', 'torch._dynamo', 'sympy', 'fvcore') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    assert not done.stderr.strip()  # no warnings
