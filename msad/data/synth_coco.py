"""The COCO-shaped synthetic profile: COCO's object-size histogram, ten classes, textured objects.

The small-object profile of :mod:`msad.data.synth` puts most objects under 32², where the ×½ image holds almost
nothing. This profile draws each object's area from COCO's histogram at the HR size instead: about 41 % small
(area < 32²), 34 % medium (32²–96²) and 25 % large (≥ 96²), log-uniform within each bin, at 384×512 by default,
so that the half-size image (192×256) still shows most objects. Ten shape classes (the five of the small
profile plus star, hexagon, pentagon, diamond and ellipse) are filled with a random texture (solid, stripes,
checks or speckle in two shades), so that shape, not colour or texture, identifies the class.

Object sizes are drawn first and then placed: an object that cannot be placed without hiding others too much
is redrawn in the same size bin, so crowding does not bias the histogram towards small objects.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from msad.data import synth_shapes as _shapes

__all__ = ["COCO_CATEGORIES", "COCO_AREA_BINS", "render_coco_image"]

#: ``(coco_id, name)`` of the COCO-shaped profile's classes (non-contiguous ids, like COCO's).
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    *_shapes.SYNTH_CATEGORIES,
    (15, "star"),
    (18, "hexagon"),
    (22, "pentagon"),
    (27, "diamond"),
    (31, "ellipse"),
)
#: ``(probability, min area, max area)`` of each COCO size bin, areas in HR pixels (COCO's 32², 96² bounds).
COCO_AREA_BINS: tuple[tuple[float, float, float], ...] = (
    (0.41, 8.0**2, 32.0**2),
    (0.34, 32.0**2, 96.0**2),
    (0.25, 96.0**2, 176.0**2),
)
_RING_INNER = (0.45, 0.6)  # inner / outer radius of a ring
_ELLIPSE_ASPECT = 0.55
_SIZE_REDRAWS = 4


def _unit_vertices(name: str, angle: float) -> np.ndarray:
    """Polygon ``[K, 2]`` of a shape with circumradius 1 centred at 0, rotated by ``angle``."""
    if name in ("square", "triangle", "cross"):
        return _shapes.shape_vertices(name, 0.0, 0.0, 1.0, angle)
    if name == "star":
        thetas = angle - np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([np.cos(thetas) * radii, np.sin(thetas) * radii], axis=1)
    if name in ("hexagon", "pentagon"):
        sides = 6 if name == "hexagon" else 5
        thetas = angle - np.pi / 2 + np.arange(sides) * 2 * np.pi / sides
        return np.stack([np.cos(thetas), np.sin(thetas)], axis=1)
    if name in ("diamond", "ellipse"):
        if name == "diamond":
            local = np.array([(0.0, -1.0), (0.6, 0.0), (0.0, 1.0), (-0.6, 0.0)])
        else:
            t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
            local = np.stack([_ELLIPSE_ASPECT * np.cos(t), np.sin(t)], axis=1)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        return local @ rotation.T
    raise ValueError(f"not a polygonal class: {name}")


def _polygon_area(vertices: np.ndarray) -> float:
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _unit_area(name: str, angle: float, inner: float) -> float:
    """Area of the shape at circumradius 1 (``inner`` is a ring's inner/outer radius ratio)."""
    if name == "circle":
        return math.pi
    if name == "ring":
        return math.pi * (1 - inner**2)
    return _polygon_area(_unit_vertices(name, angle))


def _draw_bin(rng: np.random.Generator) -> tuple[float, float]:
    """The ``(min, max)`` area of a COCO size bin drawn with the bin probabilities."""
    probs = np.array([p for p, _, _ in COCO_AREA_BINS])
    _, low, high = COCO_AREA_BINS[int(rng.choice(len(COCO_AREA_BINS), p=probs / probs.sum()))]
    return low, high


def _texture(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A ``size`` (w, h) RGB patch: solid, stripes, checks or speckle in two shades of one random colour."""
    width, height = size
    base = np.array(_shapes.random_colour(rng, (0.45, 1.0), (0.55, 1.0)), dtype=np.float32)
    other = base * rng.uniform(0.35, 0.7)
    kind = int(rng.integers(4))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(3.0, 9.0)
    if kind == 0:
        mask = np.zeros((height, width), dtype=bool)
    elif kind == 1:
        theta = rng.uniform(0, np.pi)
        mask = ((xx * math.cos(theta) + yy * math.sin(theta)) // period) % 2 == 1
    elif kind == 2:
        mask = ((xx // period) + (yy // period)) % 2 == 1
    else:
        mask = rng.random((height, width)) < 0.35
    pixels = np.where(mask[..., None], other, base)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _place(rng: np.random.Generator, image: Image.Image, boxes: list[tuple]) -> _shapes.SynthObject | None:
    """Draw one textured object of a COCO-distributed area where it fits; ``None`` when it never fits."""
    category_id, name = COCO_CATEGORIES[int(rng.integers(len(COCO_CATEGORIES)))]
    width, height = image.size
    angle, inner = rng.uniform(0, 2 * np.pi), rng.uniform(*_RING_INNER)
    low, high = _draw_bin(rng)
    for _ in range(_SIZE_REDRAWS):  # a size that does not fit is redrawn in the same bin (log-uniform)
        area = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        radius = min(math.sqrt(area / _unit_area(name, angle, inner)), min(width, height) / 2 - 2)
        for _ in range(20):
            cx, cy = rng.uniform(radius + 1, width - radius - 1), rng.uniform(radius + 1, height - radius - 1)
            if name in ("circle", "ring"):
                vertices, box = None, (cx - radius, cy - radius, cx + radius, cy + radius)
            else:
                vertices = _unit_vertices(name, angle) * radius + np.array([cx, cy])
                box = (*vertices.min(axis=0).tolist(), *vertices.max(axis=0).tolist())
            if _shapes.occludes_too_much(box, boxes):
                continue
            return _draw_textured(rng, image, name, vertices, box, inner * radius, category_id)
    return None


def _draw_textured(rng: np.random.Generator, image: Image.Image, name: str, vertices: np.ndarray | None, box: tuple,
                   inner: float, category_id: int) -> _shapes.SynthObject:
    """Rasterise the shape (supersampled mask) filled with a random texture; return the object."""
    alpha, (ox, oy) = _shapes.shape_mask(name, vertices, box, inner)
    local = alpha.size
    image.paste(_texture(rng, local), (ox, oy, ox + local[0], oy + local[1]), alpha)
    area = float(np.asarray(alpha, dtype=np.float64).sum() / 255.0)
    return _shapes.SynthObject(category_id, tuple(float(v) for v in box), area)


def render_coco_image(
    rng: np.random.Generator, image_size: tuple[int, int], objects: tuple[int, int] = (4, 12)
) -> tuple[Image.Image, list[_shapes.SynthObject]]:
    """Render one image of the COCO-shaped profile and the objects drawn on it (a pure function of ``rng``)."""
    height, width = image_size
    image = _shapes.background(rng, height, width)
    for _ in range(max(1, round(height * width / (256 * 320)))):  # clutter density of the small profile
        _shapes.distractors(rng, image)
    return _shapes.objects_and_noise(rng, image, objects, _place)
