"""``tiny_vgg``: a small VGG-style backbone honouring msad's backbone contract.

Contract (``docs/architecture.md``): ``builder(**typed_kwargs) -> nn.Module`` whose ``feature_info`` names
``res2``…``res5`` with strides 4, 8, 16, 32, and whose ``forward(x[B,3,H,W])`` returns a dict keyed by those names.

Layout: a stride-2 stem conv, then four stages; each stage halves the resolution with a 2×2 max-pool and applies
``convs_per_stage`` 3×3 conv-norm-ReLU blocks. Stage channels are ``channels × (1, 2, 4, 8)``.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from msad.structures import FeatureInfo

__all__ = ["TinyVGG", "build_tiny_vgg", "LEVELS", "STRIDES"]

#: Backbone level names and their strides (fixed by msad's contract).
LEVELS: tuple[str, ...] = ("res2", "res3", "res4", "res5")
STRIDES: tuple[int, ...] = (4, 8, 16, 32)

Norm = Literal["bn", "gn", "none"]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'bn', 'gn' or 'none', got {kind!r}")


def _conv_block(in_channels: int, out_channels: int, *, stride: int, norm: str) -> nn.Sequential:
    """3×3 conv (no bias when normalised) → norm → ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=norm == "none"),
        _norm(norm, out_channels),
        nn.ReLU(inplace=True),
    )


class TinyVGG(nn.Module):
    """VGG-style backbone with outputs ``res2``…``res5`` (strides 4…32).

    Args:
        channels: channels of ``res2``; later stages double them (``res5`` has ``8 × channels``).
        convs_per_stage: 3×3 conv-norm-ReLU blocks per stage.
        norm: ``"bn"`` (BatchNorm), ``"gn"`` (GroupNorm) or ``"none"``.
    """

    def __init__(self, *, channels: int = 32, convs_per_stage: int = 2, norm: str = "bn") -> None:
        super().__init__()
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        if convs_per_stage <= 0:
            raise ValueError(f"convs_per_stage must be positive, got {convs_per_stage}")
        _norm(norm, 1)  # validates ``norm`` before building anything
        self.channels = channels
        self.norm = norm
        self.stem = _conv_block(3, channels, stride=2, norm=norm)  # stride 2
        self._channels = [channels * 2**i for i in range(len(LEVELS))]
        stages = []
        in_ch = channels
        for out_ch in self._channels:
            blocks: list[nn.Module] = [nn.MaxPool2d(2, 2)]
            for _ in range(convs_per_stage):
                blocks.append(_conv_block(in_ch, out_ch, stride=1, norm=norm))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def feature_info(self) -> list[FeatureInfo]:
        """``res2``…``res5`` with their channels and strides 4, 8, 16, 32."""
        return [FeatureInfo(name, ch, s) for name, ch, s in zip(LEVELS, self._channels, STRIDES, strict=True)]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Feature maps keyed ``res2``…``res5``; ``x`` is ``[B, 3, H, W]`` (H, W multiples of 32 for exact strides)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an image batch [B, 3, H, W], got shape {tuple(x.shape)}")
        out: dict[str, Tensor] = {}
        x = self.stem(x)
        for name, stage in zip(LEVELS, self.stages, strict=True):
            x = stage(x)
            out[name] = x
        return out


def build_tiny_vgg(*, channels: int = 32, convs_per_stage: int = 2, norm: Norm = "bn") -> TinyVGG:
    """Tiny VGG-style backbone (``msad.backbones`` plugin ``tiny_vgg``).

    Recipe use::

        [model.backbone]
        name = "tiny_vgg"
        channels = 16
        norm = "bn"

    Args:
        channels: channels of ``res2`` (doubled per stage: ``res5`` has ``8 × channels``).
        convs_per_stage: 3×3 conv-norm-ReLU blocks per stage.
        norm: ``"bn"``, ``"gn"`` or ``"none"``.
    """
    return TinyVGG(channels=channels, convs_per_stage=convs_per_stage, norm=norm)
