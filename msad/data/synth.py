"""A procedurally generated COCO-format detection dataset where resolution matters.

Five shape classes (circle, square, triangle, ring, cross) with non-contiguous COCO ids, colours drawn at
random per object (so shape, not colour, identifies the class), mostly small objects (~6–20 px) plus
some medium ones (~24–64 px), on a textured, cluttered background (low-frequency colour noise, distractor
lines and elongated blobs, sensor noise). Objects may partially occlude each other; a box always covers
the whole object. Shapes are rasterised with 4× supersampling, so edges are antialiased and boxes are
the exact continuous extents of the geometry.

Everything is a pure function of ``seed``: image ``i`` of a split uses
``numpy.random.default_rng([seed, split, i])``, and two runs write identical bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from msad.data.synth_coco import COCO_CATEGORIES, render_coco_image
from msad.data.synth_shapes import (
    SYNTH_CATEGORIES,
    SynthObject,
    background,
    distractors,
    objects_and_noise,
    occludes_too_much,
    random_colour,
    shape_mask,
    shape_vertices,
)
from msad.serialization import atomic_write_text

__all__ = ["SYNTH_CATEGORIES", "SYNTH_PROFILES", "SynthProfile", "SynthSummary", "generate_synthetic_coco", "render_image",
           "synth_profile", "size_fractions", "synthetic_files",
           "COCO_SIZE_BOUNDS", "coco_size_bin"]

_SPLIT_CODES = {"train": 0, "val": 1}
_SMALL_DIAMETER = (8.0, 24.0)  # circumscribed diameter; boxes ~6–22 px
_MEDIUM_DIAMETER = (28.0, 66.0)  # boxes ~24–64 px
_SMALL_FRACTION = 0.75


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_synthetic_coco` wrote.

    Attributes:
        out_dir: the dataset root (``train/``, ``val/``, ``annotations/{train,val}.json``).
        seed: the generation seed.
        image_size: ``(height, width)`` of every image.
        categories: ``(coco_id, name)`` of every class.
        images: number of images per split.
        annotations: number of boxes per split.
        small_fraction: fraction of boxes with COCO area < 32² (small objects), per split.
        size_fractions: fractions of small / medium / large boxes (COCO's 32², 96² area bounds), per split.
        profile: the generator profile (``small`` or ``coco``).
    """

    out_dir: Path
    seed: int
    image_size: tuple[int, int]
    categories: tuple[tuple[int, str], ...] = SYNTH_CATEGORIES
    images: dict[str, int] = field(default_factory=dict)
    annotations: dict[str, int] = field(default_factory=dict)
    small_fraction: dict[str, float] = field(default_factory=dict)
    size_fractions: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    profile: str = "small"

    def images_dir(self, split: str) -> Path:
        """Folder of the images of ``split`` (``"train"`` or ``"val"``)."""
        return self.out_dir / split

    def annotations_file(self, split: str) -> Path:
        """COCO json of ``split``."""
        return self.out_dir / "annotations" / f"{split}.json"


@dataclass(frozen=True)
class SynthProfile:
    """A generator profile: its classes, default image size and object count, and its image renderer.

    Attributes:
        name: ``small`` (the default: mostly objects under 32², the hard case for the ×½ image) or ``coco``
            (COCO's object-size histogram, ten textured classes; :mod:`msad.data.synth_coco`).
        categories: ``(coco_id, name)`` of its classes.
        image_size: default ``(height, width)``.
        objects_per_image: default inclusive range of objects attempted per image.
        render: ``render(rng, image_size, objects) -> (image, objects drawn)``.
    """

    name: str
    categories: tuple[tuple[int, str], ...]
    image_size: tuple[int, int]
    objects_per_image: tuple[int, int]
    render: Callable[[np.random.Generator, tuple[int, int], tuple[int, int]], tuple[Image.Image, list[SynthObject]]]


#: Names of the generator profiles.
SYNTH_PROFILES: tuple[str, ...] = ("small", "coco")


def synth_profile(name: str) -> SynthProfile:
    """The generator profile called ``name`` (one of :data:`SYNTH_PROFILES`)."""
    if name == "small":
        return SynthProfile("small", SYNTH_CATEGORIES, (256, 320), (8, 20), render_image)
    if name == "coco":
        return SynthProfile("coco", COCO_CATEGORIES, (384, 512), (4, 12), render_coco_image)
    raise ValueError(f"unknown synthetic profile {name!r}; choose from {', '.join(SYNTH_PROFILES)}")


#: COCO's object-size bounds (what COCOeval's APs/APm/APl use): area < 32² is small, < 96² medium, the rest large.
COCO_SIZE_BOUNDS = (32**2, 96**2)


def coco_size_bin(area: float) -> int:
    """0, 1 or 2: small, medium or large by :data:`COCO_SIZE_BOUNDS`."""
    return 0 if area < COCO_SIZE_BOUNDS[0] else 1 if area < COCO_SIZE_BOUNDS[1] else 2


def size_fractions(areas: Sequence[float]) -> tuple[float, float, float]:
    """Fractions of ``areas`` that COCO calls small, medium and large (:func:`coco_size_bin`)."""
    n = max(len(areas), 1)
    bins = [coco_size_bin(a) for a in areas]
    return bins.count(0) / n, bins.count(1) / n, bins.count(2) / n


def synthetic_files(*, train: int, val: int) -> list[str]:
    """The files :func:`generate_synthetic_coco` writes, relative to its ``out_dir``."""
    names = [f"annotations/{split}.json" for split in ("train", "val")]
    for split, count in (("train", train), ("val", val)):
        names += [f"{split}/{_file_name(index)}" for index in range(count)]
    return names


def _file_name(index: int) -> str:
    """The image file of the ``index``-th image of a split."""
    return f"{index + 1:06d}.png"


def generate_synthetic_coco(
    out_dir: Path,
    *,
    train: int,
    val: int,
    seed: int,
    image_size: tuple[int, int] | None = None,
    objects_per_image: tuple[int, int] | None = None,
    profile: str = "small",
) -> SynthSummary:
    """Write a synthetic COCO detection dataset under ``out_dir`` and summarise it.

    Args:
        out_dir: dataset root; created if missing, existing files with the same names are overwritten.
        train: number of training images.
        val: number of validation images.
        seed: generation seed; the output bytes are a pure function of all arguments.
        image_size: ``(height, width)`` of the images; default: the profile's (256×320 ``small``, 384×512 ``coco``).
        objects_per_image: inclusive range of objects attempted per image (a few may not fit); default: the
            profile's.
        profile: ``small`` or ``coco`` (see :class:`SynthProfile`).
    """
    spec = synth_profile(profile)
    objects_per_image = objects_per_image or spec.objects_per_image
    image_size = image_size or spec.image_size
    if train < 0 or val < 0:
        raise ValueError(f"image counts must be >= 0, got train={train}, val={val}")
    height, width = image_size
    if height < 32 or width < 32:
        raise ValueError(f"image_size must be at least 32x32, got {image_size}")
    out_dir = Path(out_dir)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations, small, sizes = {}, {}, {}, {}
    for split, count in (("train", train), ("val", val)):
        coco = _write_split(out_dir, split, count, seed, image_size, objects_per_image, spec)
        images[split] = len(coco["images"])
        annotations[split] = len(coco["annotations"])
        sizes[split] = size_fractions([a["area"] for a in coco["annotations"]])
        small[split] = sizes[split][0]
    return SynthSummary(out_dir, seed, (height, width), spec.categories, images, annotations, small, sizes, spec.name)


def _write_split(
    out_dir: Path, split: str, count: int, seed: int, image_size: tuple[int, int], objects: tuple[int, int],
    spec: SynthProfile,
) -> dict[str, Any]:
    """Render and save ``count`` images of ``split`` and its json; return the json dict."""
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    coco: dict[str, Any] = {
        "info": {"description": "msad synthetic shapes", "seed": seed, "split": split,
                 **({} if spec.name == "small" else {"profile": spec.name})},
        "images": [],
        "annotations": [],
        "categories": [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in spec.categories],
    }
    for index in range(count):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
        image, drawn = spec.render(rng, image_size, objects)
        image_id = index + 1
        file_name = _file_name(index)
        image.save(image_dir / file_name, format="PNG", compress_level=1)
        coco["images"].append({"id": image_id, "file_name": file_name, "height": image_size[0], "width": image_size[1]})
        for obj in drawn:
            x1, y1, x2, y2 = obj.box
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": obj.category_id,
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "area": round(obj.area, 2),
                    "iscrowd": 0,
                }
            )
    text = json.dumps(coco, separators=(",", ":"))
    atomic_write_text(out_dir / "annotations" / f"{split}.json", text)
    return coco


def render_image(
    rng: np.random.Generator, image_size: tuple[int, int], objects: tuple[int, int] = (8, 20)
) -> tuple[Image.Image, list[SynthObject]]:
    """Render one cluttered RGB image and the objects drawn on it (a pure function of ``rng``'s state)."""
    image = background(rng, *image_size)
    distractors(rng, image)
    return objects_and_noise(rng, image, objects, _place_object)


def _geometry(name: str, cx: float, cy: float, radius: float, angle: float) -> tuple[np.ndarray | None, tuple]:
    """Vertices (``None`` for round classes) and the exact continuous box of a shape."""
    if name in ("circle", "ring"):
        return None, (cx - radius, cy - radius, cx + radius, cy + radius)
    vertices = shape_vertices(name, cx, cy, radius, angle)
    x1, y1 = vertices.min(axis=0)
    x2, y2 = vertices.max(axis=0)
    return vertices, (float(x1), float(y1), float(x2), float(y2))


def _place_object(rng: np.random.Generator, image: Image.Image, boxes: list[tuple]) -> SynthObject | None:
    """Pick a class, size and place that fit in the image without hiding others too much, and draw it."""
    category_id, name = SYNTH_CATEGORIES[int(rng.integers(len(SYNTH_CATEGORIES)))]
    diameter = rng.uniform(*(_SMALL_DIAMETER if rng.random() < _SMALL_FRACTION else _MEDIUM_DIAMETER))
    width, height = image.size
    radius, angle = min(diameter / 2, min(width, height) / 2 - 2), rng.uniform(0, 2 * np.pi)
    inner = rng.uniform(0.45, 0.6) * radius
    colour = random_colour(rng, (0.45, 1.0), (0.5, 1.0))
    for _ in range(20):
        cx, cy = rng.uniform(radius + 1, width - radius - 1), rng.uniform(radius + 1, height - radius - 1)
        vertices, box = _geometry(name, cx, cy, radius, angle)
        if not occludes_too_much(box, boxes):
            area = _draw(image, name, vertices, box, inner, colour)
            return SynthObject(category_id, box, area)
    return None


def _draw(image: Image.Image, name: str, vertices: np.ndarray | None, box: tuple, inner: float, colour: tuple) -> float:
    """Rasterise a shape with supersampling, paste it in ``colour``; return its covered area in pixels."""
    alpha, (ox, oy) = shape_mask(name, vertices, box, inner)
    image.paste(colour, (ox, oy, ox + alpha.width, oy + alpha.height), alpha)
    return float(np.asarray(alpha, dtype=np.float64).sum() / 255.0)


