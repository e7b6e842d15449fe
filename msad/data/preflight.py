"""Checks of one image file and of one annotation's box, for a preflight look at a dataset (``msad data check``).

:func:`inspect_image` reads a file's header (PIL opens lazily: no pixel is decoded) and its last KiB; with
``decode=True`` it decodes the whole image as training does (:func:`~msad.data.images.read_image`).
:func:`box_problem` says what is wrong with a COCO ``[x, y, w, h]`` box in a ``width × height`` image.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from msad.data.images import ImageReadError, read_image

__all__ = ["ImageCheck", "PROBLEM_KINDS", "inspect_image", "box_problem", "box_clipped", "TAIL_BYTES", "OUTSIDE_TOLERANCE"]

#: The kinds of problem a check reports, in the order the report lists them.
PROBLEM_KINDS = ("missing", "unreadable", "truncated", "wrong size", "bad box")
#: How much of a file's end is searched for its end marker (JPEG ``FFD9``, PNG ``IEND``): padding after it is fine.
TAIL_BYTES = 1024
#: A box may pass an image edge by this many pixels (rounding in annotation tools) before it counts as clipped.
OUTSIDE_TOLERANCE = 1.0

_ORIENTATION = 0x0112  # EXIF tag; values 5-8 are transposed (width and height swap on display)


@dataclass(frozen=True)
class ImageCheck:
    """What :func:`inspect_image` found: the displayed ``(height, width)`` (``None`` when unknown) and a problem.

    Attributes:
        size: ``(height, width)`` after the EXIF orientation, as training sees the image.
        kind: one of :data:`PROBLEM_KINDS` (``"missing"``, ``"unreadable"``, ``"truncated"``) or ``None``.
        detail: one line saying what is wrong (empty when nothing is).
        orientation: the EXIF orientation tag (1 when absent).
    """

    size: tuple[int, int] | None
    kind: str | None = None
    detail: str = ""
    orientation: int = 1


def inspect_image(path: str | os.PathLike[str], *, decode: bool = False) -> ImageCheck:
    """Header, size and end marker of the image at ``path`` (or a full decode with ``decode=True``).

    Checks, in order: the file exists and is a file; PIL identifies its format and reads its header; a JPEG
    ends with its end-of-image marker (``FFD9``) and a PNG with its ``IEND`` chunk within the last
    :data:`TAIL_BYTES` bytes (other formats: no end check); with ``decode``, the whole image decodes.
    """
    path = Path(path)
    if not path.is_file():
        return ImageCheck(None, "missing", "is a directory" if path.is_dir() else "file not found")
    try:
        with open(path, "rb") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's EXIF / decompression chatter
            with Image.open(handle) as img:
                fmt, (width, height) = img.format, img.size
                orientation = _orientation(img)
            end_problem = _end_problem(handle, fmt)
    except UnidentifiedImageError:
        return ImageCheck(None, "unreadable", "not a recognised image file (corrupt or unsupported format)")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return ImageCheck(None, "unreadable", f"cannot read the header ({' '.join(str(exc).split())})")
    size = (width, height) if orientation in (5, 6, 7, 8) else (height, width)
    if end_problem:
        return ImageCheck(size, "truncated", end_problem, orientation)
    if decode:
        try:
            read_image(path)
        except ImageReadError as exc:
            return ImageCheck(size, "truncated" if "is truncated" in exc.problem else "unreadable", exc.problem, orientation)
    return ImageCheck(size, orientation=orientation)


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(_ORIENTATION, 1))
    except (TypeError, ValueError, OSError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def _end_problem(handle: Any, fmt: str | None) -> str:
    """Why the file open in ``handle`` looks cut short (empty when its end marker is there or unchecked)."""
    marker = {"JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "PNG": b"IEND"}.get(fmt or "")
    if marker is None:
        return ""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - TAIL_BYTES))
    if marker in handle.read():
        return ""
    what = "end-of-image marker (FFD9)" if marker != b"IEND" else "IEND chunk"
    return f"no {fmt} {what} in its last {TAIL_BYTES} bytes: the file is cut short"


def box_problem(bbox: Sequence[Any], width: int | None, height: int | None) -> str:
    """What is wrong with COCO box ``[x, y, w, h]`` in a ``width × height`` image (empty when nothing is).

    A box is bad when a value is not a finite number, its width or height is negative, or it lies entirely
    outside the image (checked only when the size is known; training would drop it). A box that only reaches
    past an edge is not a problem (objects cut by the frame; training clips it): see :func:`box_clipped`.
    """
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return f"bbox {list(bbox)!r} is not four numbers"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return f"bbox {[x, y, w, h]} has a NaN or infinite value"
    if w < 0 or h < 0:
        return f"bbox {[x, y, w, h]} has a negative {'width' if w < 0 else 'height'}"
    if width is None or height is None:
        return ""
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
        return f"bbox {[x, y, w, h]} lies entirely outside the {width}×{height} image"
    return ""


def box_clipped(bbox: Sequence[Any], width: int | None, height: int | None) -> bool:
    """Whether a good box passes an edge of the ``width × height`` image by more than :data:`OUTSIDE_TOLERANCE` px."""
    if width is None or height is None:
        return False
    x, y, w, h = (float(v) for v in bbox)
    tol = OUTSIDE_TOLERANCE
    return x < -tol or y < -tol or x + w > width + tol or y + h > height + tol
