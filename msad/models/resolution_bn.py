"""Private BatchNorm per input resolution, switched by branch (beyond the paper).

The aligned teacher runs one backbone on the HR image and on its ×1/k copy. With shared BatchNorm (the
paper) both passes update one set of running statistics in turn, and one set of affine parameters serves
two input distributions. :func:`convert_to_resolution_bn` gives every BatchNorm of a module one private copy
per resolution (``hr`` and ``lr``), the way a slimmable network keeps one private BN per width; the active
copy is chosen with :func:`use_resolution`. :func:`collapse_resolution_bn` turns the module back into a plain
one that keeps a single resolution's copies (the low-resolution student keeps the ``lr`` set).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["RESOLUTIONS", "ResolutionBatchNorm", "convert_to_resolution_bn", "use_resolution", "collapse_resolution_bn"]

#: The resolutions a :class:`ResolutionBatchNorm` holds a private BN for.
RESOLUTIONS: tuple[str, ...] = ("hr", "lr")


class ResolutionBatchNorm(nn.Module):
    """One private BatchNorm per resolution (``bns["hr"]``, ``bns["lr"]``); ``active`` picks the one used.

    Args:
        bn: the BatchNorm to copy; every resolution starts from its parameters and statistics.
    """

    def __init__(self, bn: _BatchNorm) -> None:
        super().__init__()
        self.bns = nn.ModuleDict({name: copy.deepcopy(bn) for name in RESOLUTIONS})
        self.active = "hr"

    def forward(self, x: Tensor) -> Tensor:
        """Normalise with the active resolution's BN."""
        return self.bns[self.active](x)

    def extra_repr(self) -> str:
        return f"active={self.active!r}"


def convert_to_resolution_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm (``_BatchNorm``) inside ``module`` by a :class:`ResolutionBatchNorm`, in place.

    Norms that are not ``_BatchNorm`` (GroupNorm, frozen BN, which has fixed statistics) are left shared.
    Returns ``module``; a module that is itself a BatchNorm is returned wrapped.
    """
    if isinstance(module, _BatchNorm):
        return ResolutionBatchNorm(module)
    for name, child in module.named_children():
        if isinstance(child, ResolutionBatchNorm):
            continue
        setattr(module, name, convert_to_resolution_bn(child))
    return module


def _resolution_norms(module: nn.Module) -> list[ResolutionBatchNorm]:
    return [m for m in module.modules() if isinstance(m, ResolutionBatchNorm)]


@contextmanager
def use_resolution(module: nn.Module, resolution: str) -> Iterator[None]:
    """Within the block, every :class:`ResolutionBatchNorm` of ``module`` uses ``resolution``'s BN.

    A no-op for a module without any (shared BN). The previous choice is restored on exit.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    norms = _resolution_norms(module)
    previous = [m.active for m in norms]
    for m in norms:
        m.active = resolution
    try:
        yield
    finally:
        for m, active in zip(norms, previous, strict=True):
            m.active = active


def collapse_resolution_bn(module: nn.Module, resolution: str) -> nn.Module:
    """Replace every :class:`ResolutionBatchNorm` inside ``module`` by its ``resolution`` BN, in place.

    The result is a plain module (ordinary BatchNorm state-dict keys); returns ``module``.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    if isinstance(module, ResolutionBatchNorm):
        return module.bns[resolution]
    for name, child in module.named_children():
        setattr(module, name, collapse_resolution_bn(child, resolution))
    return module
