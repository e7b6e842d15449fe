"""The aligned multi-scale teacher (MSAD stage 1).

One detector runs on the HR batch and on its nearest ×1/k copy. The LR branch is routed so that its
pyramid level ``P_{i-log2 k}`` feeds head level ``p_i`` (``LevelPairing``), which makes every LR map the
same size as the HR map it pairs with; C-FF fuses each pair and the shared head runs on the HR, LR and
fused pyramids. All three are keyed by HR head level and decode with HR strides. A backbone converted by
:func:`~msad.models.resolution_bn.convert_to_resolution_bn` normalises each pass with its own BN set.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from msad.levels import LevelPairing
from msad.models.detector import FCOS, downscale_nearest
from msad.models.fusion import CrossFeatureFusion
from msad.models.resolution_bn import use_resolution
from msad.structures import LevelOutputs

__all__ = ["TeacherOutputs", "AlignedMultiScaleTeacher"]

BRANCHES = ("hr", "lr", "fused")


@dataclass
class TeacherOutputs:
    """Everything one teacher pass produces, keyed by HR head level.

    Attributes:
        hr_features, lr_features, fused_features: pyramid maps of each branch.
        hr, lr, fused: head outputs of each branch (``None`` for branches not requested).
    """

    hr_features: dict[str, Tensor]
    lr_features: dict[str, Tensor]
    fused_features: dict[str, Tensor]
    hr: dict[str, LevelOutputs] | None
    lr: dict[str, LevelOutputs] | None
    fused: dict[str, LevelOutputs] | None

    def branch(self, name: str) -> dict[str, LevelOutputs]:
        """Head outputs of branch ``hr``, ``lr`` or ``fused``."""
        out = getattr(self, name)
        if out is None:
            raise ValueError(f"teacher branch {name!r} was not computed")
        return out


class AlignedMultiScaleTeacher(nn.Module):
    """Multi-scale teacher with crossing feature-level fusion.

    Args:
        detector: an identity-routed :class:`FCOS` whose neck produces both HR and LR levels.
        fusion: the shared C-FF module.
        pairing: HR head level ↔ LR pyramid level for the factor ``k``.
    """

    def __init__(self, *, detector: FCOS, fusion: CrossFeatureFusion, pairing: LevelPairing) -> None:
        super().__init__()
        self.detector = detector
        self.fusion = fusion
        self.pairing = pairing

    @property
    def strides(self) -> dict[str, int]:
        """HR strides of the head levels (all three branches decode with them)."""
        return self.detector.strides

    def fused_features(self, hr_images: Tensor) -> dict[str, Tensor]:
        """Only the fused pyramid (what the student is distilled towards)."""
        return self.forward(hr_images, branches=()).fused_features

    def forward(self, hr_images: Tensor, branches: tuple[str, ...] = BRANCHES) -> TeacherOutputs:
        """Run both resolutions, fuse, and apply the head to the requested branches."""
        unknown = set(branches) - set(BRANCHES)
        if unknown:
            raise ValueError(f"unknown teacher branches {sorted(unknown)}; choose from {BRANCHES}")
        backbone = self.detector.backbone
        with use_resolution(backbone, "hr"):  # private BN per resolution, when the backbone has them
            hr = self.detector.routed_pyramid(hr_images)
        lr_images = downscale_nearest(hr_images, self.pairing.k)
        with use_resolution(backbone, "lr"):
            lr = self.detector.routed_pyramid(lr_images, self.pairing.lr_for_hr)
        fused = {lvl: self.fusion(hr[lvl], lr[lvl]) for lvl in hr}
        head = self.detector.head
        return TeacherOutputs(
            hr_features=hr,
            lr_features=lr,
            fused_features=fused,
            hr=head(hr) if "hr" in branches else None,
            lr=head(lr) if "lr" in branches else None,
            fused=head(fused) if "fused" in branches else None,
        )
