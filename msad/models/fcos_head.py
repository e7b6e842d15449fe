"""The FCOS head, shared by every pyramid level.

Two towers of ``num_convs`` 3×3 convs (GroupNorm 32, ReLU) feed a classification layer (bias set for a
prior of 0.01), a box layer predicting ``(l, t, r, b)`` in units of the level's stride through a learnable
per-level scale and a ReLU, and a centerness layer on the box tower. Box and centerness layers have no bias.

Every conv starts from N(0, 0.01) as in the reference, except, by default, the box layer: ``box_init="half_normal"``
(beyond the reference) takes the absolute value of its N(0, 0.01) draw. The box tower (``num_convs`` ≥ 1) ends in
a ReLU, so its features are ≥ 0, and non-negative weights make every box output start > 0. With the reference's
zero-mean weights (``box_init="normal"``, which the paper recipes keep) a box channel can start ≤ 0 at nearly every
location; the ReLU then passes it no gradient and it never learns: from scratch on ``recipes/tiny.toml`` 6 of 20
baseline runs ended at AP 0 (``benchmarks/README.md``, "Dead box regression"). Architecture and checkpoints are the
same either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from msad.structures import LevelOutputs

__all__ = ["BOX_INITS", "FCOSHead", "build_fcos_head"]

BOX_INITS = ("normal", "half_normal")


def _tower(channels: int, num_convs: int, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(channels, channels, 3, padding=1))  # biased before GN, as AdelaiDet (and its checkpoints)
        if norm == "gn":
            layers.append(nn.GroupNorm(min(32, channels), channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """Shared FCOS head producing :class:`~msad.structures.LevelOutputs` per head level.

    Args:
        in_channels: channels of every input level.
        num_classes: number of object classes.
        levels: head level names, one learnable box scale each (``p3``…``p7``).
        num_convs: convs per tower.
        prior_prob: foreground prior used to initialise the classification bias.
        norm: ``"gn"`` (GroupNorm, 32 groups) or ``"none"``.
        box_init: ``"half_normal"`` (box weights ≥ 0; see the module docstring) or ``"normal"`` (the reference).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        levels: Sequence[str],
        num_convs: int,
        prior_prob: float,
        norm: str,
        box_init: str,
    ) -> None:
        super().__init__()
        self.levels = tuple(levels)
        self.num_classes = num_classes
        self.cls_tower = _tower(in_channels, num_convs, norm)
        self.box_tower = _tower(in_channels, num_convs, norm)
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(in_channels, 4, 3, padding=1, bias=False)
        self.centerness = nn.Conv2d(in_channels, 1, 3, padding=1, bias=False)
        self.scales = nn.ParameterDict({lvl: nn.Parameter(torch.ones(())) for lvl in self.levels})
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))
        if box_init == "half_normal":
            with torch.no_grad():
                self.box_pred.weight.abs_()

    def forward(self, features: dict[str, Tensor]) -> dict[str, LevelOutputs]:
        """Run the head on each head level; keys must be among ``self.levels``."""
        unknown = [lvl for lvl in features if lvl not in self.scales]
        if unknown:
            raise ValueError(f"FCOS head has no scale for levels {unknown}; it was built for {self.levels}")
        out: dict[str, LevelOutputs] = {}
        for lvl, x in features.items():
            cls_feat = self.cls_tower(x)
            box_feat = self.box_tower(x)
            out[lvl] = LevelOutputs(
                cls_logits=self.cls_logits(cls_feat),
                box_regression=torch.relu(self.scales[lvl] * self.box_pred(box_feat)),
                centerness=self.centerness(box_feat),
            )
        return out


def build_fcos_head(
    *,
    in_channels: int,
    num_classes: int,
    levels: Sequence[str],
    num_convs: int = 4,
    prior_prob: float = 0.01,
    norm: str = "gn",
    box_init: str = "half_normal",
) -> FCOSHead:
    """Build the FCOS head (``msad.heads`` plugin ``fcos``).

    Args:
        in_channels: channels of the pyramid (supplied by msad).
        num_classes: number of classes (supplied by msad from the dataset).
        levels: head levels (supplied by msad).
        num_convs: convs per tower (4 in the paper).
        prior_prob: classification prior (0.01).
        norm: ``"gn"`` or ``"none"``.
        box_init: ``"half_normal"`` (the absolute value of an N(0, 0.01) draw, so that no box channel starts dead
            behind the ReLU) or ``"normal"`` (the reference's N(0, 0.01), kept by the paper recipes).
    """
    if num_convs < 0:
        raise ValueError(f"num_convs must be ≥ 0, got {num_convs}")
    if not 0 < prior_prob < 1:
        raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
    if norm not in ("gn", "none"):
        raise ValueError(f"norm must be 'gn' or 'none', got {norm!r}")
    if box_init not in BOX_INITS:
        raise ValueError(f"box_init must be one of {', '.join(map(repr, BOX_INITS))}, got {box_init!r}")
    return FCOSHead(
        in_channels=in_channels,
        num_classes=num_classes,
        levels=levels,
        num_convs=num_convs,
        prior_prob=prior_prob,
        norm=norm,
        box_init=box_init,
    )
