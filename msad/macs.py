"""Multiply-add counting from shapes alone: a model runs on ``meta`` tensors and every operator is counted.

Nothing is computed. Operators are intercepted where the model calls them (``conv2d``, ``batch_norm``,
``linear``, ``interpolate``…, as a :class:`~torch.overrides.TorchFunctionMode`), answered with an empty
``meta`` tensor of the right shape and counted by fvcore's conventions: one multiply-add per "flop";
convolutions and matrix products by their multiply-adds, batch norm in eval mode 2 per element with an
affine (5 when training), group/layer/instance norm 5, nearest upsampling 1 per output element, bilinear 4,
adaptive average pooling 1 per input element. So the figures equal ``fvcore.nn.FlopCountAnalysis``'s, and
operators neither counts (element-wise additions, max-pooling, softmax…) are listed as skipped. Staying above
the dispatcher also keeps torch's Python meta kernels (and the compiler stack they import) out of the way.

>>> with on_meta():
...     model = torch.nn.Conv2d(3, 8, 3, padding=1)
>>> count_macs(model, torch.empty(1, 3, 32, 32, device="meta")).total
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
from torch.overrides import TorchFunctionMode

__all__ = ["MacCount", "count_macs", "on_meta"]


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


def _empty(shape: Sequence[int], like: Tensor) -> Tensor:
    return torch.empty(tuple(int(s) for s in shape), dtype=like.dtype, device="meta")


def _bind(args: tuple, kwargs: dict, names: str, defaults: dict[str, Any] | None = None) -> list[Any]:
    """The values of the parameters ``names`` (space-separated) from a call's positional and keyword arguments."""
    keys = names.split()
    positional = dict(zip(keys, args, strict=False))  # a call may pass fewer positional arguments than there are names
    values = {**(defaults or {}), **positional, **kwargs}
    return [values.get(key) for key in keys]


def _broadcast(shapes: Sequence[Sequence[int]]) -> list[int]:
    """The broadcast of static shapes (``torch.broadcast_shapes`` imports torch's symbolic-shape machinery)."""
    n = max(len(shape) for shape in shapes)
    out = []
    for dims in zip(*((1,) * (n - len(shape)) + tuple(shape) for shape in shapes), strict=True):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise RuntimeError(f"shapes {[tuple(x) for x in shapes]} cannot be broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return out


def _tuple(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, tuple | list) else (value,) * n


def _window(size: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:  # the last window must start inside the input or left padding
        out -= 1
    return out


def _conv(args, kwargs, fold_bn):
    x, w, _, stride, padding, dilation = _bind(args, kwargs, "input weight bias stride padding dilation",
                                               {"stride": 1, "padding": 0, "dilation": 1})
    n = w.dim() - 2
    stride, dilation = _tuple(stride, n), _tuple(dilation, n)
    if padding == "same":
        spatial = list(x.shape[2:])
    else:
        padding = _tuple(0 if padding == "valid" else padding, n)
        spatial = [_window(*v) for v in zip(x.shape[2:], w.shape[2:], stride, padding, dilation, strict=True)]
    return x.shape[0] * math.prod(w.shape) * math.prod(spatial), _empty([x.shape[0], w.shape[0], *spatial], x)


def _norm(affine: str, training: str | None = None, default_training: bool = False):
    """Batch/group/layer/instance norm: 5 (4 without an affine) per element, batch norm at eval 2 (1)."""

    def handle(args, kwargs, fold_bn):
        names = f"input {affine}" + (f" {training}" if training else "")
        x, weight, *rest = _bind(args, kwargs, names, {training: default_training} if training else None)
        if training and not rest[0]:  # batch norm with running statistics
            macs = 0 if fold_bn else x.numel() * (2 if weight is not None else 1)
        else:
            macs = x.numel() * (5 if weight is not None else 4)
        return macs, _empty(x.shape, x)

    return handle


def _linear(args, kwargs, fold_bn):
    x, w = _bind(args, kwargs, "input weight")
    return x.numel() * w.shape[0], _empty([*x.shape[:-1], w.shape[0]], x)


def _interpolate(args, kwargs, fold_bn):
    x, size, scale, mode = _bind(args, kwargs, "input size scale_factor mode", {"mode": "nearest"})
    n = x.dim() - 2
    if size is not None:
        spatial = list(_tuple(size, n))
    else:
        spatial = [math.floor(float(s) * float(f)) for s, f in zip(x.shape[2:], _tuple(scale, n), strict=True)]
    out = _empty([*x.shape[:2], *spatial], x)
    per_output = {("nearest", 2): 1, ("bilinear", 2): 4}.get((mode, n))
    if per_output is None:
        return None, out
    return per_output * out.numel(), out


def _adaptive_avg_pool(args, kwargs, fold_bn):
    x, size = _bind(args, kwargs, "input output_size")
    size = [s if o is None else o for s, o in zip(x.shape[-2:], _tuple(size, 2), strict=True)]
    return x.numel(), _empty([*x.shape[:-2], *size], x)


def _grid_sample(args, kwargs, fold_bn):
    x, grid = _bind(args, kwargs, "input grid")
    out = _empty([x.shape[0], x.shape[1], *grid.shape[1:-1]], x)
    return 4 * out.numel(), out


def _matmul(func, args, kwargs, fold_bn):
    out = func(*args, **kwargs)
    a, b = (args[1], args[2]) if func.__name__ == "addmm" else (args[0], args[1])
    return a.numel() * b.shape[-1], out


#: Counted operators, by the name the model calls them: ``handle(args, kwargs, fold_bn) -> (macs, output)``.
_COUNTED: dict[str, tuple[str, Callable]] = {
    "conv1d": ("aten::convolution", _conv), "conv2d": ("aten::convolution", _conv), "conv3d": ("aten::convolution", _conv),
    "batch_norm": ("aten::batch_norm", _norm("weight", "training")),
    "group_norm": ("aten::group_norm", _norm("weight")),
    "layer_norm": ("aten::layer_norm", _norm("weight")),
    "instance_norm": ("aten::instance_norm", _norm("weight")),
    "linear": ("aten::linear", _linear),
    "interpolate": ("aten::upsample", _interpolate),
    "adaptive_avg_pool2d": ("aten::adaptive_avg_pool2d", _adaptive_avg_pool),
    "grid_sample": ("aten::grid_sampler", _grid_sample),
}
#: Counted operators that run on meta (cheap C++ shape functions), by fvcore's matrix-product rule.
_MATMUL = {"matmul": "aten::matmul", "mm": "aten::mm", "bmm": "aten::bmm", "addmm": "aten::addmm"}
#: Element-wise binary operators answered by shape (not counted, as fvcore), with the name fvcore lists them by.
_ELEMENTWISE = {
    "add": "add", "__add__": "add", "__radd__": "add", "sub": "sub", "__sub__": "sub", "__rsub__": "sub",
    "mul": "mul", "__mul__": "mul", "__rmul__": "mul", "div": "div", "__truediv__": "div", "__rtruediv__": "div",
    "__iadd__": "add_", "__isub__": "sub_", "__imul__": "mul_", "__itruediv__": "div_",
}
#: Operators without arithmetic worth counting (moves, views, activations), as fvcore ignores them.
_FREE = {"relu", "relu_", "cat"}
#: Uncounted element-wise functions and reductions answered by shape (torch's meta kernels for them are Python).
_UNARY = {"softmax", "log_softmax", "sigmoid", "tanh", "exp", "sqrt", "gelu", "silu", "hardswish", "hardsigmoid"}
_REDUCTIONS = {"mean", "sum", "amax", "amin"}


def _max_pool(args, kwargs):
    x, k, s, p, d, ceil, indices = _bind(
        args, kwargs, "input kernel_size stride padding dilation ceil_mode return_indices",
        {"padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False},
    )
    k = _tuple(k, 2)
    s = _tuple(s if s not in (None, [], ()) else k, 2)
    spatial = [_window(*v, ceil=bool(ceil)) for v in zip(x.shape[-2:], k, s, _tuple(p, 2), _tuple(d, 2), strict=True)]
    out = _empty([*x.shape[:-2], *spatial], x)
    return (out, torch.empty(out.shape, dtype=torch.int64, device="meta")) if indices else out


def _shape_only(name: str, args: tuple, kwargs: dict):
    """The result of an uncounted operator by shape alone, or ``NotImplemented`` to run it."""
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
    first = args[0] if args else next(iter(kwargs.values()), None)
    if (name in _ELEMENTWISE or name.endswith("_") and not name.startswith("__")) and tensors:
        if name.endswith("_"):
            return tensors[0]  # in place: the same tensor (initialisers such as kaiming_normal_ included)
        return _empty(_broadcast([t.shape for t in tensors]), tensors[0])
    if name == "relu" and isinstance(first, Tensor):
        return first if kwargs.get("inplace") or (len(args) > 1 and args[1]) else _empty(first.shape, first)
    if name == "cat":
        tensors, dim = _bind(args, kwargs, "tensors dim", {"dim": 0})
        tensors = [t for t in tensors if t.numel() or t.dim() > 1]
        shape = list(tensors[0].shape)
        shape[dim] = sum(t.shape[dim] for t in tensors)
        return _empty(shape, tensors[0])
    if name == "max_pool2d":
        return _max_pool(args, kwargs)
    if name in _UNARY and isinstance(first, Tensor):
        return _empty(first.shape, first)
    if name in _REDUCTIONS and isinstance(first, Tensor):
        _, dim, keepdim = _bind(args, kwargs, "input dim keepdim", {"keepdim": False})
        dims = range(first.dim()) if dim is None else {d % first.dim() for d in _tuple(dim, 1)}
        shape = [1 if i in dims else n for i, n in enumerate(first.shape) if keepdim or i not in dims]
        return _empty(shape, first)
    return NotImplemented


class _Counting(TorchFunctionMode):
    """Answers operators by shape and, when ``result`` is set, counts them (except while ``paused``)."""

    def __init__(self, *, fold_bn: bool = False, result: MacCount | None = None) -> None:
        super().__init__()
        self.fold_bn, self.result, self.paused = fold_bn, result, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _COUNTED:
            operator, handle = _COUNTED[name]
            macs, out = handle(args, kwargs, self.fold_bn)
            self._add(operator, macs, name)
            return out
        if name in _MATMUL:
            macs, out = _matmul(func, args, kwargs, self.fold_bn)
            self._add(_MATMUL[name], macs, name)
            return out
        out = _shape_only(name, args, kwargs)
        if out is NotImplemented:  # views, sizes, properties…: cheap on meta, run as they are
            return func(*args, **kwargs)
        if name not in _FREE:
            self._skip(_ELEMENTWISE.get(name, name))
        return out

    def _add(self, operator: str, macs: float | None, name: str) -> None:
        """Count ``macs`` of a counted operator (``None``: a variant fvcore does not count, listed as skipped)."""
        if self.result is None:
            return
        if macs is None:
            self._skip(name)
        elif self.paused:
            self.result.excluded += macs
        else:
            self.result.total += macs
            self.result.by_operator[operator] += macs

    def _skip(self, name: str) -> None:
        if self.result is not None and not self.paused:
            self.result.skipped[f"aten::{name}"] += 1


class on_meta:  # noqa: N801 - used like ``torch.device("meta")``
    """Build modules on the ``meta`` device quickly: parameters have shapes only and initialisers are skipped.

    >>> with on_meta():
    ...     layer = torch.nn.Linear(4, 2)
    >>> layer.weight.device.type
    'meta'
    """

    def __enter__(self) -> on_meta:
        self._device, self._mode = torch.device("meta"), _Counting()
        self._device.__enter__()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
        self._device.__exit__(*exc)


def count_macs(
    fn: Callable[[Tensor], Any], image: Tensor, *, module: nn.Module | None = None, fold_bn: bool = False,
    exclude: Sequence[str] = (),
) -> MacCount:
    """Multiply-adds of ``fn(image)``, measured from shapes (``image`` and the parameters on ``meta``).

    Args:
        fn: a module or any callable of one image batch.
        image: the input batch, on the ``meta`` device.
        module: the module whose submodules ``exclude`` names (default: ``fn`` when it is a module).
        fold_bn: count batch norm with running statistics as free (it folds into the convolutions at inference).
        exclude: submodules whose cost is left out (and reported as ``excluded``), e.g. ``("stem",)``.
    """
    owner = module if module is not None else fn
    result = MacCount()
    mode = _Counting(fold_bn=fold_bn, result=result)
    handles = []
    for name in exclude:
        if not isinstance(owner, nn.Module):
            raise TypeError("count_macs: `exclude` needs a module (pass module=...)")
        sub = owner.get_submodule(name)
        handles.append(sub.register_forward_pre_hook(lambda *_: setattr(mode, "paused", mode.paused + 1)))
        handles.append(sub.register_forward_hook(lambda *_: setattr(mode, "paused", mode.paused - 1)))
    try:
        with torch.no_grad(), mode:
            fn(image)
    finally:
        for handle in handles:
            handle.remove()
    return result
