"""Data rows of ``benchmarks/speed.py --mode data``: msad's training item against torchvision's bare path.

On generated 640×480 JPEGs (msad's COCO-shaped synthetic images re-encoded at quality 90, written to a
temporary folder; nothing is downloaded) at ``recipes/coco.toml``'s sizes (short side drawn from 640–800, long
side ≤ 1333, flip 0.5):

- per-image CPU ms (this thread's CPU time, one torch thread) of ``CocoDetection[(index, seed)]`` (read,
  decode, targets, seeded resize and flip) against ``decode_jpeg(read_file(path), apply_exif_orientation=True)``
  followed by ``transforms.v2.functional.resize`` on ``uint8`` (antialias) to the same output size, the two
  interleaved item by item so that the machine's drift falls on both; the figure is the ratio of the medians;
- DataLoader images/s through msad's training loader (``build_train_loader``, the baseline's collator,
  per-GPU batch 2) with 0, 1, 2 and 4 workers.

    python benchmarks/speed.py --mode data --images 64 --iters 200
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from PIL import Image

from msad import api
from msad.build import build_train_dataset
from msad.config import load_recipe
from msad.data import build_train_loader
from msad.roles import get_role

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "coco.toml"


def write_jpeg_dataset(root: Path, images: int) -> Path:
    """A COCO-layout set of ``images`` 640×480 JPEGs (synthetic scenes, quality 90) in ``root``; returns ``root``."""
    api.synth_data(root, train=images, val=1, seed=0, profile="coco", image_size=(480, 640))
    for split in ("train", "val"):
        path = root / "annotations" / f"{split}.json"
        data = json.loads(path.read_text())
        for img in data["images"]:
            png = root / split / img["file_name"]
            img["file_name"] = png.with_suffix(".jpg").name
            Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), quality=90)
            png.unlink()
        path.write_text(json.dumps(data))
    return root


def _recipe(root: Path, workers: int = 0):
    return load_recipe(RECIPE, overrides=[
        f'data.train_images="{root / "train"}"', f'data.train_annotations="{root / "annotations" / "train.json"}"',
        f'data.val_images="{root / "val"}"', f'data.val_annotations="{root / "annotations" / "val.json"}"',
        f"data.num_workers={workers}",
    ])


def item_rows(root: Path, iters: int) -> dict[str, float]:
    """Median per-image CPU ms of msad's item and of torchvision's decode + resize, interleaved."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms.v2.functional import resize

    dataset = build_train_dataset(_recipe(root))
    times: dict[str, list[float]] = {"msad": [], "torchvision": []}
    warnings.simplefilter("ignore")  # torchvision 0.29's deprecation of its decoders
    for step in range(-10, iters):  # the first 10 warm up
        index, seed = step % len(dataset), 1000 + step
        start = time.thread_time()
        _, _, meta = dataset[(index, seed)]
        middle = time.thread_time()
        image = decode_jpeg(read_file(str(dataset.image_path(index))), apply_exif_orientation=True)
        resize(image, list(meta["size"]), antialias=True)
        end = time.thread_time()
        if step >= 0:
            times["msad"].append(middle - start)
            times["torchvision"].append(end - middle)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def loader_rows(root: Path, workers: list[int], batches: int) -> dict[int, float]:
    """Images/s of msad's training loader (baseline collator, batch 2) for each worker count."""
    out = {}
    for count in workers:
        recipe = _recipe(root, count)
        loader = build_train_loader(
            build_train_dataset(recipe), total_batch_size=2, rank=0, world_size=1, seed=0,
            num_workers=count, collate=get_role("baseline").collator(recipe),
        )
        for _ in range(max(2, count * 2)):  # workers started and their first prefetch consumed
            next(loader)
        start = time.perf_counter()
        for _ in range(batches):
            next(loader)
        out[count] = 2 * batches / (time.perf_counter() - start)
        del loader
    return out


def run(images: int, iters: int, workers: list[int], batches: int) -> dict:
    """Generate the JPEGs, print both tables and return their figures."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="msad_data_speed_") as tmp:
        root = write_jpeg_dataset(Path(tmp), images)
        items = item_rows(root, iters)
        ratio = items["msad"] / items["torchvision"]
        print(f"\ntraining item, {images} generated 640×480 JPEGs at recipes/coco.toml sizes, median of {iters} "
              "(this thread's CPU time, interleaved)")
        print(f"{'msad CocoDetection item':44s} {items['msad']:8.2f} ms")
        print(f"{'torchvision decode_jpeg + v2 resize (uint8)':44s} {items['torchvision']:8.2f} ms")
        print(f"{'msad / torchvision':44s} {ratio:8.2f}x")
        rates = loader_rows(root, workers, batches)
        print(f"\nmsad training loader (baseline collator, batch 2), {batches} batches after warm-up")
        for count, rate in rates.items():
            print(f"{count} workers{'':35s} {rate:8.1f} images/s")
    return {"item_ms": items, "ratio": ratio, "loader_images_per_s": rates}
