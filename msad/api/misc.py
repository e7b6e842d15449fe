"""Small API functions: the synthetic dataset and the plugin listing."""

from __future__ import annotations

from pathlib import Path

from msad.data import SynthSummary, generate_synthetic_coco
from msad.plugins import PluginInfo, list_plugins

__all__ = ["synth_data", "plugins"]


def synth_data(
    out: str | Path, *, train: int, val: int, seed: int = 0, image_size: tuple[int, int] = (256, 320), force: bool = False
) -> SynthSummary:
    """Write the synthetic COCO dataset into ``out``.

    Raises:
        FileExistsError: ``out`` already holds a dataset and ``force`` is not set (nothing is touched).
    """
    root = Path(out)
    existing = [p for p in (root / "annotations" / "train.json", root / "annotations" / "val.json") if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{root} already holds a dataset ({existing[0].name}); pass --force to overwrite it")
    return generate_synthetic_coco(root, train=train, val=val, seed=seed, image_size=image_size)


def plugins() -> list[PluginInfo]:
    """Every plugin of every group with its distribution, version and load status (never raises)."""
    return list_plugins()
