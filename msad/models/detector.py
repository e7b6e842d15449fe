"""The FCOS detector: backbone → neck → shared head, with explicit head-level routing.

``head_levels`` maps each head level (``p3``…``p7``, strides 8…128 in the frame of the targets) to the
pyramid level that feeds it. A normal detector uses the identity; the low-resolution student uses
``LevelPairing(k=2).lr_for_hr`` (``p3 ← p2`` …), so its boxes come out in the high-resolution frame.
Losses and post-processing live apart (:mod:`msad.ops`), as in DETR's split of model and criterion.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from msad.levels import HEAD_LEVELS, level_stride
from msad.structures import LevelOutputs

__all__ = ["FCOS", "downscale_nearest"]


def downscale_nearest(images: Tensor, k: int) -> Tensor:
    """The nearest-neighbour ×1/k copy of a padded batch, as the aligned teacher and the student see it."""
    if images.shape[-1] % k or images.shape[-2] % k:
        raise ValueError(f"image batch {tuple(images.shape[-2:])} is not divisible by the resolution factor {k}")
    return F.interpolate(images, scale_factor=1.0 / k, mode="nearest")


class FCOS(nn.Module):
    """FCOS detector core.

    Args:
        backbone: module with ``feature_info`` returning ``res*`` maps.
        neck: module with ``feature_info``; ``forward(features, levels)`` returns ``p*`` maps.
        head: shared head; ``forward(dict[head level, Tensor]) -> dict[head level, LevelOutputs]``.
        head_levels: head level → pyramid level feeding it (identity on ``p3``…``p7`` by default).
    """

    def __init__(
        self, *, backbone: nn.Module, neck: nn.Module, head: nn.Module, head_levels: Mapping[str, str] | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.head_levels = dict(head_levels) if head_levels is not None else {lvl: lvl for lvl in HEAD_LEVELS}
        produced = {f.name for f in neck.feature_info}
        missing = sorted(set(self.head_levels.values()) - produced)
        if missing:
            raise ValueError(f"head levels need pyramid levels {missing}; the neck produces {sorted(produced)}")

    @property
    def strides(self) -> dict[str, int]:
        """Stride of each head level in the frame of the targets."""
        return {lvl: level_stride(lvl) for lvl in self.head_levels}

    def pyramid(self, images: Tensor, levels: list[str]) -> dict[str, Tensor]:
        """Backbone + neck on ``images``, returning the named pyramid levels."""
        return self.neck(self.backbone(images), levels)

    def routed_pyramid(self, images: Tensor, head_levels: Mapping[str, str] | None = None) -> dict[str, Tensor]:
        """Pyramid maps keyed by head level, each taken from the pyramid level ``head_levels`` names."""
        routing = self.head_levels if head_levels is None else head_levels
        maps = self.pyramid(images, sorted(set(routing.values())))
        return {head: maps[src] for head, src in routing.items()}

    def forward(
        self, images: Tensor, *, with_features: bool = False
    ) -> dict[str, LevelOutputs] | tuple[dict[str, LevelOutputs], dict[str, Tensor]]:
        """Head outputs per head level for a normalised, padded batch.

        With ``with_features`` also return the routed pyramid (keyed by head level), so that a wrapper such
        as DDP sees one forward call even when a distillation loss needs the features.
        """
        features = self.routed_pyramid(images)
        outputs = self.head(features)
        return (outputs, features) if with_features else outputs
