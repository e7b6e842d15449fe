"""Multiply-add counting from shapes alone: a model runs on ``meta`` tensors and every operator is counted.

Nothing is computed: the heavy operators (convolution, batch and group norm) return empty ``meta`` tensors of
the right shape, the others run their ``meta`` kernels. The counts follow fvcore's conventions (one
multiply-add per "flop"; convolution and matrix products by their multiply-adds, batch norm in eval mode
2 per element with an affine, group/layer norm 5, nearest upsampling 1 per output element, adaptive
average pooling 1 per input element), so figures agree with ``fvcore.nn.FlopCountAnalysis``; operators
counted by neither (element-wise additions, pooling, softmax…) are listed as skipped.

>>> with torch.device("meta"):
...     model = torch.nn.Conv2d(3, 8, 3, padding=1)
>>> count_macs(model, torch.zeros(1, 3, 32, 32, device="meta")).total
221184.0
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["MacCount", "count_macs", "on_meta"]

aten = torch.ops.aten


@dataclass
class MacCount:
    """Multiply-adds of one call.

    Attributes:
        total: multiply-adds of the counted operators (excluded submodules left out).
        excluded: multiply-adds inside the excluded submodules.
        by_operator: the total split by operator (``"aten::convolution"`` …).
        skipped: operators that cost arithmetic but are not counted, with how often they ran.
    """

    total: float = 0.0
    excluded: float = 0.0
    by_operator: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _empty(shape: Sequence[int], like: Tensor) -> Tensor:
    """An empty meta tensor (``torch.empty_like`` on meta goes through a slow Python reference)."""
    return torch.empty(tuple(shape), dtype=like.dtype, device="meta")


def _conv_shape(x: Tensor, w: Tensor, stride, padding, dilation) -> list[int]:
    spatial = [
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation, strict=True)
    ]
    return [x.shape[0], w.shape[0], *spatial]


def _convolution(args, fold_bn: bool):
    x, w, _, stride, padding, dilation, transposed = args[:7]
    if transposed:
        out = aten.convolution.default(*args)
        return x.shape[0] * _numel(w.shape) * _numel(x.shape[2:]), out
    shape = _conv_shape(x, w, stride, padding, dilation)
    return x.shape[0] * _numel(w.shape) * _numel(shape[2:]), _empty(shape, x)


def _batch_norm(args, fold_bn: bool):
    """``native_batch_norm`` and ``_native_batch_norm_legit*``: (output, saved mean, saved inverse std)."""
    x, weight = args[0], args[1]
    training = args[5] if len(args) > 5 and isinstance(args[5], bool) else False
    if fold_bn:
        macs = 0
    elif training:
        macs = x.numel() * (5 if weight is not None else 4)
    else:
        macs = x.numel() * (2 if weight is not None else 1)
    return macs, (_empty(x.shape, x), _empty((0,), x), _empty((0,), x))


def _group_norm(args, fold_bn: bool):
    x, weight, n, groups = args[0], args[1], args[3], args[6]
    return x.numel() * (5 if weight is not None else 4), (_empty(x.shape, x), _empty((n, groups), x), _empty((n, groups), x))


def _computed(macs: Callable[[tuple, Any], int]):
    """A handler that runs the operator's meta kernel and counts ``macs(args, out)``."""

    def handle(func, args, kwargs):
        out = func(*args, **kwargs)
        return macs(args, out), out

    return handle


_SHAPE_ONLY = {
    aten.convolution: _convolution,
    aten.native_batch_norm: _batch_norm,
    aten._native_batch_norm_legit: _batch_norm,
    aten._native_batch_norm_legit_no_training: lambda args, fold: _batch_norm((*args[:5], False), fold),
    aten.native_group_norm: _group_norm,
}
_COMPUTED = {
    aten.mm: _computed(lambda a, out: _numel(a[0].shape) * a[1].shape[-1]),
    aten.addmm: _computed(lambda a, out: a[1].shape[0] * a[1].shape[1] * a[2].shape[1]),
    aten.bmm: _computed(lambda a, out: _numel(a[0].shape) * a[1].shape[-1]),
    aten.native_layer_norm: _computed(lambda a, out: a[0].numel() * (5 if a[2] is not None else 4)),
    aten.upsample_nearest2d: _computed(lambda a, out: out.numel()),
    aten.upsample_bilinear2d: _computed(lambda a, out: 4 * out.numel()),
    aten._adaptive_avg_pool2d: _computed(lambda a, out: a[0].numel()),
    aten.grid_sampler_2d: _computed(lambda a, out: 4 * out.numel()),
}
#: Operators that do no arithmetic worth counting (moves, views, comparisons, activations), as fvcore ignores them.
_FREE = {
    "alias", "arange", "as_strided", "cat", "clamp", "clamp_", "clone", "constant_pad_nd", "copy_", "detach",
    "empty", "empty_like", "empty_strided", "eq", "expand", "fill_", "flatten", "full", "full_like", "gather", "ge",
    "gt", "index", "index_put_", "lift_fresh", "masked_fill", "new_empty", "new_empty_strided", "new_full",
    "new_zeros", "nonzero", "ones", "ones_like", "permute", "relu", "relu_", "reshape", "select", "slice", "split",
    "split_with_sizes", "squeeze", "stack", "t", "to", "_to_copy", "transpose", "unbind", "unsqueeze", "unsqueeze_",
    "view", "_unsafe_view", "zero_", "zeros", "zeros_like", "threshold_backward", "sym_size", "lt", "le", "ne",
}


class _ShapesOnly(TorchDispatchMode):
    """Runs operators on ``meta`` tensors without their (Python) meta kernels where the result is obvious.

    An in-place operator returns its input (initialisers such as ``normal_`` included); an element-wise
    one an empty tensor of the broadcast shape.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.run(func, args, kwargs or {})

    @staticmethod
    def run(func, args, kwargs):
        """``func(*args, **kwargs)`` on meta tensors, by shape alone where possible."""
        name = func.overloadpacket.__name__
        first = args[0] if args else None
        if isinstance(first, Tensor) and first.is_meta:
            if name.endswith("_") and not name.startswith("_") and func._schema.returns and func._schema.returns[0].alias_info:
                return first
            if name in _ELEMENTWISE and not kwargs:
                shapes = [a.shape for a in args if isinstance(a, Tensor)]
                return _empty(torch.broadcast_shapes(*shapes), first)
        return func(*args, **kwargs)


_ELEMENTWISE = {"add", "sub", "mul", "div", "relu", "sigmoid", "exp", "sqrt"}


class on_meta:  # noqa: N801 - used like ``torch.device("meta")``
    """Build modules on the ``meta`` device quickly: parameters have shapes only and initialisers are skipped.

    >>> with on_meta():
    ...     layer = torch.nn.Linear(4, 2)
    >>> layer.weight.device.type
    'meta'
    """

    def __enter__(self) -> on_meta:
        self._device, self._mode = torch.device("meta"), _ShapesOnly()
        self._device.__enter__()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
        self._device.__exit__(*exc)


class _Counting(TorchDispatchMode):
    """Counts every operator that runs while active, except inside the modules it is paused for."""

    def __init__(self, fold_bn: bool) -> None:
        super().__init__()
        self.fold_bn = fold_bn
        self.result = MacCount()
        self.paused = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in _SHAPE_ONLY and not kwargs:
            macs, out = _SHAPE_ONLY[packet](args, self.fold_bn)
        elif packet in _COMPUTED:
            macs, out = _COMPUTED[packet](func, args, kwargs)
        else:
            name = packet.__name__
            if not self.paused and name not in _FREE:
                self.result.skipped[_READABLE.get(name, f"aten::{name}")] += 1
            return _ShapesOnly.run(func, args, kwargs)
        if self.paused:
            self.result.excluded += macs
        elif macs:
            self.result.total += macs
            self.result.by_operator[f"aten::{packet.__name__}"] += macs
        return out


#: Names of skipped operators as users know them (the dispatcher sees lower-level variants).
_READABLE = {"max_pool2d_with_indices": "aten::max_pool2d", "_softmax": "aten::softmax"}


def count_macs(
    fn: Callable[[Tensor], Any], image: Tensor, *, module: nn.Module | None = None, fold_bn: bool = False,
    exclude: Sequence[str] = (),
) -> MacCount:
    """Multiply-adds of ``fn(image)``, measured from shapes (``image`` and the parameters are best on ``meta``).

    Args:
        fn: a module or any callable of one image batch.
        image: the input batch; on the ``meta`` device nothing is computed.
        module: the module whose submodules ``exclude`` names (default: ``fn`` when it is a module).
        fold_bn: count batch norm as free (it folds into the convolutions at inference).
        exclude: submodules whose cost is left out, e.g. ``("stem",)``.
    """
    owner = module if module is not None else fn
    counter = _Counting(fold_bn)
    handles = []
    for name in exclude:
        if not isinstance(owner, nn.Module):
            raise TypeError("count_macs: `exclude` needs a module (pass module=...)")
        sub = owner.get_submodule(name)
        handles.append(sub.register_forward_pre_hook(lambda *_: setattr(counter, "paused", counter.paused + 1)))
        handles.append(sub.register_forward_hook(lambda *_: setattr(counter, "paused", counter.paused - 1)))
    try:
        with torch.no_grad(), counter:
            fn(image)
    finally:
        for handle in handles:
            handle.remove()
    return counter.result
