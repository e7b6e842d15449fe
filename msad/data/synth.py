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

import colorsys
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from msad.serialization import atomic_write_text

__all__ = ["SYNTH_CATEGORIES", "SYNTH_PROFILES", "SynthProfile", "SynthSummary", "generate_synthetic_coco", "render_image",
           "synth_profile", "size_fractions", "synthetic_files",
           "COCO_SIZE_BOUNDS", "coco_size_bin"]

#: ``(coco_id, name)`` of the synthetic classes; ids are non-contiguous like COCO's
SYNTH_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "circle"),
    (3, "square"),
    (7, "triangle"),
    (8, "ring"),
    (12, "cross"),
)

_SPLIT_CODES = {"train": 0, "val": 1}
_SUPERSAMPLE = 4
_SMALL_DIAMETER = (8.0, 24.0)  # circumscribed diameter; boxes ~6–22 px
_MEDIUM_DIAMETER = (28.0, 66.0)  # boxes ~24–64 px
_SMALL_FRACTION = 0.75
_MAX_OCCLUSION = 0.45  # at most this fraction of any object's box may be covered by another box


@dataclass(frozen=True)
class SynthObject:
    """One drawn object: class, box ``(x1, y1, x2, y2)`` in pixels, and visible-shape area in pixels."""

    category_id: int
    box: tuple[float, float, float, float]
    area: float


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
        from msad.data.synth_coco import COCO_CATEGORIES, render_coco_image  # imports this module

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
    image = _background(rng, *image_size)
    _distractors(rng, image)
    return _objects_and_noise(rng, image, objects, _place_object)


def _objects_and_noise(
    rng: np.random.Generator, image: Image.Image, objects: tuple[int, int],
    place: Callable[[np.random.Generator, Image.Image, list[tuple]], SynthObject | None],
) -> tuple[Image.Image, list[SynthObject]]:
    """Place a random number of objects in ``objects`` with ``place``, then add sensor noise."""
    boxes: list[tuple[float, float, float, float]] = []
    drawn: list[SynthObject] = []
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        obj = place(rng, image, boxes)
        if obj is not None:
            boxes.append(obj.box)
            drawn.append(obj)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-5, 6, (image.height, image.width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), drawn


def _random_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> tuple:
    """A random RGB colour with hue uniform and saturation/value in the given ranges."""
    h, s, v = rng.random(), rng.uniform(*saturation), rng.uniform(*value)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def _background(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A muted base colour plus smooth low-frequency colour noise."""
    base = np.array(_random_colour(rng, (0.0, 0.35), (0.25, 0.75)), dtype=np.float32)
    coarse = rng.normal(0.0, 28.0, (height // 32 + 2, width // 32 + 2, 3)).astype(np.float32)
    coarse_img = Image.fromarray(np.clip(coarse + 128.0, 0, 255).astype(np.uint8))
    smooth = np.asarray(coarse_img.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32) - 128.0
    return Image.fromarray(np.clip(base + smooth, 0, 255).astype(np.uint8))


def _distractors(rng: np.random.Generator, image: Image.Image) -> None:
    """Draw random lines and elongated blobs (never shaped like a class) in random colours."""
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(int(rng.integers(3, 9))):
        x1, x2 = rng.uniform(0, width, 2)
        y1, y2 = rng.uniform(0, height, 2)
        colour = _random_colour(rng, (0.2, 0.9), (0.3, 0.9))
        draw.line([(x1, y1), (x2, y2)], fill=colour, width=int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        long_side, aspect = rng.uniform(12, 60), rng.uniform(3.0, 6.0)
        half_w, half_h = (long_side / 2, long_side / (2 * aspect))
        if rng.random() < 0.5:
            half_w, half_h = half_h, half_w
        colour = _random_colour(rng, (0.1, 0.7), (0.3, 0.8))
        draw.ellipse([cx - half_w, cy - half_h, cx + half_w, cy + half_h], fill=colour)


def _shape_vertices(name: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Polygon vertices ``[K, 2]`` of a polygonal class with circumradius ``radius``, rotated by ``angle``."""
    if name == "square":
        thetas = angle + np.pi / 4 + np.arange(4) * np.pi / 2
        points = np.stack([np.cos(thetas), np.sin(thetas)], axis=1) * radius
    elif name == "triangle":
        thetas = angle - np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        points = np.stack([np.cos(thetas), np.sin(thetas)], axis=1) * radius
    elif name == "cross":
        a, t = radius, radius * 0.32  # arm half-length and half-thickness
        plus = [(t, -a), (t, -t), (a, -t), (a, t), (t, t), (t, a)]
        plus += [(-x, -y) for x, y in plus]  # point-symmetric: the other half of the outline
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points = np.array(plus, dtype=np.float64) @ rotation.T
    else:
        raise ValueError(f"not a polygonal class: {name}")
    return points + np.array([cx, cy])


def _geometry(name: str, cx: float, cy: float, radius: float, angle: float) -> tuple[np.ndarray | None, tuple]:
    """Vertices (``None`` for round classes) and the exact continuous box of a shape."""
    if name in ("circle", "ring"):
        return None, (cx - radius, cy - radius, cx + radius, cy + radius)
    vertices = _shape_vertices(name, cx, cy, radius, angle)
    x1, y1 = vertices.min(axis=0)
    x2, y2 = vertices.max(axis=0)
    return vertices, (float(x1), float(y1), float(x2), float(y2))


def _occludes_too_much(box: tuple, others: list[tuple]) -> bool:
    """Whether ``box`` and any earlier box cover more than ``_MAX_OCCLUSION`` of either one."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    for other in others:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        if iw <= 0 or ih <= 0:
            continue
        other_area = (other[2] - other[0]) * (other[3] - other[1])
        if iw * ih > _MAX_OCCLUSION * min(area, other_area):
            return True
    return False


def _place_object(rng: np.random.Generator, image: Image.Image, boxes: list[tuple]) -> SynthObject | None:
    """Pick a class, size and place that fit in the image without hiding others too much, and draw it."""
    category_id, name = SYNTH_CATEGORIES[int(rng.integers(len(SYNTH_CATEGORIES)))]
    diameter = rng.uniform(*(_SMALL_DIAMETER if rng.random() < _SMALL_FRACTION else _MEDIUM_DIAMETER))
    width, height = image.size
    radius, angle = min(diameter / 2, min(width, height) / 2 - 2), rng.uniform(0, 2 * np.pi)
    inner = rng.uniform(0.45, 0.6) * radius
    colour = _random_colour(rng, (0.45, 1.0), (0.5, 1.0))
    for _ in range(20):
        cx, cy = rng.uniform(radius + 1, width - radius - 1), rng.uniform(radius + 1, height - radius - 1)
        vertices, box = _geometry(name, cx, cy, radius, angle)
        if not _occludes_too_much(box, boxes):
            area = _draw(image, name, vertices, box, inner, colour)
            return SynthObject(category_id, box, area)
    return None


def _draw(image: Image.Image, name: str, vertices: np.ndarray | None, box: tuple, inner: float, colour: tuple) -> float:
    """Rasterise a shape with supersampling, paste it in ``colour``; return its covered area in pixels."""
    alpha, (ox, oy) = _shape_mask(name, vertices, box, inner)
    image.paste(colour, (ox, oy, ox + alpha.width, oy + alpha.height), alpha)
    return float(np.asarray(alpha, dtype=np.float64).sum() / 255.0)


def _shape_mask(name: str, vertices: np.ndarray | None, box: tuple, inner: float) -> tuple[Image.Image, tuple[int, int]]:
    """The antialiased coverage mask (``L``) of a shape over its box, and the mask's top-left pixel."""
    ox, oy = int(math.floor(box[0])) - 1, int(math.floor(box[1])) - 1
    local_w, local_h = int(math.ceil(box[2])) + 1 - ox, int(math.ceil(box[3])) + 1 - oy
    s = _SUPERSAMPLE
    mask = Image.new("L", (local_w * s, local_h * s), 0)
    draw = ImageDraw.Draw(mask)
    if vertices is None:
        outer = [(box[0] - ox) * s, (box[1] - oy) * s, (box[2] - ox) * s, (box[3] - oy) * s]
        draw.ellipse(outer, fill=255)
        if name == "ring":
            cx, cy = (outer[0] + outer[2]) / 2, (outer[1] + outer[3]) / 2
            draw.ellipse([cx - inner * s, cy - inner * s, cx + inner * s, cy + inner * s], fill=0)
    else:
        draw.polygon([((x - ox) * s, (y - oy) * s) for x, y in vertices], fill=255)
    return mask.resize((local_w, local_h), Image.Resampling.BOX), (ox, oy)
