"""Named feature levels and the HR ↔ LR level pairing of aligned multi-scale training.

Levels are strings (``"p3"``), never bare indices. The pairing between a high-resolution level and the
low-resolution level that lines up with it pixel for pixel is explicit data: :class:`LevelPairing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "PYRAMID_LEVELS",
    "HEAD_LEVELS",
    "BACKBONE_LEVELS",
    "SIZES_OF_INTEREST",
    "level_stride",
    "LevelPairing",
]

#: Every pyramid level an FPN may produce, finest first.
PYRAMID_LEVELS: tuple[str, ...] = ("p2", "p3", "p4", "p5", "p6", "p7")
#: The levels the FCOS head predicts on, in the frame of the targets.
HEAD_LEVELS: tuple[str, ...] = ("p3", "p4", "p5", "p6", "p7")
#: Backbone stages, finest first.
BACKBONE_LEVELS: tuple[str, ...] = ("res2", "res3", "res4", "res5")
#: FCOS sizes of interest per head level, on max(l, t, r, b) in pixels of the target frame.
SIZES_OF_INTEREST: dict[str, tuple[float, float]] = {
    "p3": (-1.0, 64.0),
    "p4": (64.0, 128.0),
    "p5": (128.0, 256.0),
    "p6": (256.0, 512.0),
    "p7": (512.0, math.inf),
}


def level_stride(name: str) -> int:
    """Stride of a named level: ``p3`` → 8, ``res2`` → 4."""
    if name.startswith("res") and name[3:].isdigit():
        return 2 ** int(name[3:])
    if name.startswith("p") and name[1:].isdigit():
        return 2 ** int(name[1:])
    raise ValueError(f"unknown level name {name!r}: expected 'pN' or 'resN'")


@dataclass(frozen=True)
class LevelPairing:
    """Which LR pyramid level lines up with each HR head level for a downscale factor ``k``.

    With ``k = 2`` the LR image's ``p2`` has the same size as the HR image's ``p3``, so the pairing is
    ``p3↔p2, p4↔p3, p5↔p4, p6↔p5, p7↔p6``. ``k`` must be a power of two whose LR levels the
    pyramid (``available``) produces; otherwise construction fails with a clear message.

    Attributes:
        k: downscale factor between the HR and LR images.
        hr_levels: the HR head levels being paired.
        available: pyramid levels the neck produces.
    """

    k: int = 2
    hr_levels: tuple[str, ...] = HEAD_LEVELS
    available: tuple[str, ...] = PYRAMID_LEVELS

    def __post_init__(self) -> None:
        if self.k < 2 or self.k & (self.k - 1):
            raise ValueError(f"resolution factor k={self.k} must be a power of two ≥ 2")
        missing = [lr for lr in self._lr_names() if lr not in self.available]
        if missing:
            raise ValueError(
                f"resolution factor k={self.k} pairs HR {self.hr_levels[0]} with LR {missing[0]}, "
                f"which the pyramid does not produce (it has {', '.join(self.available)}); use k=2"
            )

    @property
    def shift(self) -> int:
        """Number of pyramid levels between paired HR and LR maps (log2 k)."""
        return int(math.log2(self.k))

    def _lr_names(self) -> list[str]:
        return [f"p{level_stride(hr).bit_length() - 1 - self.shift}" for hr in self.hr_levels]

    @property
    def lr_for_hr(self) -> dict[str, str]:
        """Map HR head level → LR pyramid level, e.g. ``{"p3": "p2", …}`` for k = 2."""
        return dict(zip(self.hr_levels, self._lr_names(), strict=True))
