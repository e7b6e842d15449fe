"""The synthetic dataset, written into a folder that holds nothing else: ``msad data synth``'s API."""

from __future__ import annotations

from pathlib import Path

from msad.data import SynthSummary, generate_synthetic_coco
from msad.data.synth import synthetic_files
from msad.errors import RunStateError
from msad.outputs import check_outputs

__all__ = ["synth_data"]


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
        RunStateError: ``out`` is a file, or a folder that holds anything (a dataset, the user's own images…)
            and ``force`` is not set (nothing is touched).
    """
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise RunStateError(f"{root} is a file; give a folder for the dataset")
    held = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    if held and not force:
        shown = ", ".join(held[:3]) + (" …" if len(held) > 3 else "")
        raise RunStateError(
            f"{root} is not empty ({shown}); files there could be overwritten: choose an empty or new folder, "
            "or pass --force to write into it anyway"
        )
    check_outputs([("data synth", root / name) for name in synthetic_files(train=train, val=val)], within=root,
                  fix="choose another folder")
    return generate_synthetic_coco(root, train=train, val=val, seed=seed, image_size=image_size, profile=profile)
