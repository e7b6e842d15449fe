"""Feature pyramid network P2–P7 as FCOS uses it.

P2–P5 come from ``res2``–``res5`` through lateral 1×1 convs, a nearest-neighbour ×2 top-down path with sum
fusion and 3×3 output convs (no norm). P6 and P7 come from ``res5`` through stride-2 3×3 convs, with a ReLU
before P7. Only the levels a caller asks for are computed, so an HR branch that never uses P2 does not pay
for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from msad.levels import PYRAMID_LEVELS, level_stride
from msad.structures import FeatureInfo

__all__ = ["FPN", "build_fpn"]

_BACKBONE_FOR = {"p2": "res2", "p3": "res3", "p4": "res4", "p5": "res5"}


def _c2_xavier_fill(module: nn.Conv2d) -> None:
    """Caffe2's XavierFill as detectron2 uses it for FPN convs (kaiming uniform, a=1; zero bias)."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class FPN(nn.Module):
    """Top-down feature pyramid producing named levels ``p2``…``p7``.

    Args:
        in_features: the backbone's ``feature_info`` (must contain ``res2``…``res5`` for the levels built).
        out_channels: channels of every pyramid level.
        levels: pyramid levels this FPN can produce (a subset of ``p2``…``p7``; ``p6``/``p7`` need ``res5``).
    """

    def __init__(self, *, in_features: Sequence[FeatureInfo], out_channels: int, levels: Sequence[str]) -> None:
        super().__init__()
        bad = [lvl for lvl in levels if lvl not in PYRAMID_LEVELS]
        if bad:
            raise ValueError(f"FPN levels must be among {PYRAMID_LEVELS}, got {bad}")
        channels = {f.name: f.channels for f in in_features}
        needed = {"res5"} | {_BACKBONE_FOR[lvl] for lvl in levels if lvl in _BACKBONE_FOR}
        missing = sorted(needed - channels.keys())
        if missing:
            raise ValueError(f"FPN needs backbone levels {missing}, the backbone offers {sorted(channels)}")
        self.levels = tuple(lvl for lvl in PYRAMID_LEVELS if lvl in levels)
        self.out_channels = out_channels
        # The top-down path always starts at res5, so every lateral from the finest built level up is needed.
        finest = min((int(lvl[1]) for lvl in self.levels if lvl in _BACKBONE_FOR), default=5)
        lateral_levels = [f"p{i}" for i in range(finest, 6)]
        self.lateral = nn.ModuleDict(
            {lvl: nn.Conv2d(channels[_BACKBONE_FOR[lvl]], out_channels, 1) for lvl in lateral_levels}
        )
        self.output = nn.ModuleDict({lvl: nn.Conv2d(out_channels, out_channels, 3, padding=1) for lvl in lateral_levels})
        top_levels = {"p6", "p7"} & set(self.levels)
        self.p6 = nn.Conv2d(channels["res5"], out_channels, 3, stride=2, padding=1) if top_levels else None
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1) if "p7" in top_levels else None
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                _c2_xavier_fill(conv)

    @property
    def feature_info(self) -> list[FeatureInfo]:
        """Channels and stride of every level this FPN produces."""
        return [FeatureInfo(lvl, self.out_channels, level_stride(lvl)) for lvl in self.levels]

    def forward(self, features: dict[str, Tensor], levels: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Compute the requested pyramid levels (all of ``self.levels`` by default)."""
        wanted = self.levels if levels is None else tuple(levels)
        unknown = [lvl for lvl in wanted if lvl not in self.levels]
        if unknown:
            raise ValueError(f"this FPN does not produce {unknown}; it was built for {self.levels}")
        out: dict[str, Tensor] = {}
        finest = min((int(lvl[1]) for lvl in wanted if lvl in _BACKBONE_FOR), default=6)
        top: Tensor | None = None
        for i in range(5, finest - 1, -1):
            lvl = f"p{i}"
            lateral = self.lateral[lvl](features[_BACKBONE_FOR[lvl]])
            if top is not None:
                lateral = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
            top = lateral
            if lvl in wanted:
                out[lvl] = self.output[lvl](lateral)
        if "p6" in wanted or "p7" in wanted:
            p6 = self.p6(features["res5"])
            if "p6" in wanted:
                out["p6"] = p6
            if "p7" in wanted:
                out["p7"] = self.p7(F.relu(p6))
        return {lvl: out[lvl] for lvl in wanted}


def build_fpn(
    *, in_features: Sequence[FeatureInfo], out_channels: int = 256, levels: Sequence[str] = PYRAMID_LEVELS
) -> FPN:
    """Build the FCOS feature pyramid (``msad.necks`` plugin ``fpn``).

    Args:
        in_features: the backbone's ``feature_info`` (supplied by msad).
        out_channels: channels of every pyramid level (256 in the paper).
        levels: pyramid levels to build; ``p2``…``p7`` serves both HR and LR branches.
    """
    if out_channels <= 0:
        raise ValueError(f"out_channels must be positive, got {out_channels}")
    return FPN(in_features=in_features, out_channels=out_channels, levels=levels)
