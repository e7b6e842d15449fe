"""Inference-time batch-norm folding: every conv → BN pair becomes one biased conv.

A slimmable backbone is first sliced to its active width (:func:`slice_to_width`, which copies that width's
private BNs), so the folded network holds plain convs of one width. The folded model computes the same function
as the original in eval mode (to float rounding) and is only for inference: its BNs are gone.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from msad.models.backbones.slimmable_resnet import (
    Bottleneck,
    FrozenBatchNorm2d,
    SlimmableResNet,
    Stem,
    slice_to_width,
)
from msad.models.resolution_bn import ResolutionBatchNorm

__all__ = ["fold_batchnorm", "has_batchnorm"]

_BN = (nn.BatchNorm2d, FrozenBatchNorm2d)


def _fuse(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """One conv with ``bn`` folded in (an exact copy of ``conv``'s type is not kept: it becomes ``nn.Conv2d``)."""
    plain = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
        bias=conv.bias is not None,
    ).to(conv.weight.device, conv.weight.dtype)
    plain.weight.copy_(conv.weight)
    if conv.bias is not None:
        plain.bias.copy_(conv.bias)
    return fuse_conv_bn_eval(plain.eval(), bn.eval())


def _fold_pairs(module: nn.Module) -> int:
    """Fold the conv/BN attribute pairs of the ResNet building blocks below ``module``; returns how many."""
    folded = 0
    for sub in module.modules():
        if isinstance(sub, Stem):
            pairs = [("conv", "bn")]
        elif isinstance(sub, Bottleneck):
            pairs = [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]
        elif isinstance(sub, nn.Sequential):
            pairs = [(str(i), str(i + 1)) for i in range(len(sub) - 1)]
        else:
            continue
        for conv_name, bn_name in pairs:
            conv, bn = getattr(sub, conv_name), getattr(sub, bn_name)
            if isinstance(conv, nn.Conv2d) and type(bn) in _BN:  # not subclasses (timm's BN+act)
                setattr(sub, conv_name, _fuse(conv, bn))
                setattr(sub, bn_name, nn.Identity())
                folded += 1
    return folded


def _per_resolution(module: nn.Module) -> bool:
    return any(isinstance(m, ResolutionBatchNorm) for m in module.modules())


def has_batchnorm(model: nn.Module) -> bool:
    """Whether any batch norm (of any kind msad builds) is left in ``model``."""
    return any(isinstance(m, (*_BN, nn.modules.batchnorm._BatchNorm, ResolutionBatchNorm)) for m in model.modules())


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with batch norm folded into the preceding convolutions.

    Every :class:`SlimmableResNet` inside is replaced by a plain network of its active width first, so the
    BN folded is the active width's. Convs followed by GroupNorm (the FCOS head) are left as they are, and so
    are BNs with private copies per resolution (a ``teacher.bn = "per_resolution"`` teacher: one conv serves two
    BNs, so there is nothing to fold them into).
    ``model`` itself is not changed.
    """
    folded = copy.deepcopy(model).eval()
    for name, sub in list(folded.named_modules()):
        if isinstance(sub, SlimmableResNet) and not _per_resolution(sub):
            plain = slice_to_width(sub, sub.width).eval()
            if name:
                parent_name, _, attr = name.rpartition(".")
                setattr(folded.get_submodule(parent_name) if parent_name else folded, attr, plain)
            else:
                folded = plain
    _fold_pairs(folded)
    return folded
