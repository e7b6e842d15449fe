"""Small API functions: the synthetic dataset and the plugin listing."""

from __future__ import annotations

from pathlib import Path

from msad.data import SynthSummary, generate_synthetic_coco
from msad.plugins import PluginInfo, list_plugins

__all__ = ["synth_data", "plugins"]


def synth_data(
    out: str | Path, *, train: int, val: int, seed: int = 0, image_size: tuple[int, int] | None = None,
    force: bool = False, profile: str = "small",
) -> SynthSummary:
    """Write the synthetic COCO dataset into ``out``.

    Args:
        profile: ``small`` (mostly objects under 32², 256×320 by default) or ``coco`` (COCO's object-size
            histogram, ten textured classes, 384×512 by default).
        image_size: ``(height, width)``; default: the profile's.

    Raises:
        FileExistsError: ``out`` already holds a dataset and ``force`` is not set (nothing is touched).
    """
    root = Path(out)
    existing = [p for p in (root / "annotations" / "train.json", root / "annotations" / "val.json") if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{root} already holds a dataset ({existing[0].name}); pass --force to overwrite it")
    return generate_synthetic_coco(root, train=train, val=val, seed=seed, image_size=image_size, profile=profile)


def plugins() -> list[PluginInfo]:
    """Every plugin of every group with its distribution, version and load status (never raises)."""
    return list_plugins()
