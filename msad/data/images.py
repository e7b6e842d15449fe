"""Robust image reading: any common file on disk becomes a ``uint8`` RGB tensor ``[3, H, W]``.

Handles grayscale, 16-bit, palette, alpha (composited on black), CMYK and YCbCr images, applies the
EXIF orientation tag, and turns every failure into one :class:`ImageReadError` whose one-line message
names the file and says what is wrong.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from msad.errors import DataError

__all__ = ["ImageReadError", "read_image", "pil_to_rgb"]


class ImageReadError(DataError, ValueError):
    """An image file is missing, unreadable or corrupt; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # one line
        super().__init__(f"cannot read image {self.path!r}: {self.problem}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.problem))


def read_image(path: str | os.PathLike[str]) -> Tensor:
    """Read an image file as an RGB ``uint8`` tensor ``[3, H, W]`` in display orientation.

    Args:
        path: an image file PIL can decode (PNG, JPEG, BMP, TIFF, WebP…); unicode paths are fine.

    Raises:
        ImageReadError: the file is missing, is a directory, is not an image, or its data is truncated.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's EXIF / decompression chatter
            with Image.open(path) as img:
                img.load()
                rgb = pil_to_rgb(ImageOps.exif_transpose(img))
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image file (corrupt or unsupported format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(path, f"corrupt or truncated image data ({exc})") from exc
    array = np.array(rgb, dtype=np.uint8)  # a writable copy
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode to 8-bit ``RGB`` (alpha composited on black, high depth rescaled)."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16"):
        return _high_depth_to_rgb(img, 65535.0)
    if img.mode in ("I", "F"):  # depth unknown: guess the range from the data
        peak = float(np.asarray(img).max(initial=0))
        return _high_depth_to_rgb(img, 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _high_depth_to_rgb(img: Image.Image, full_scale: float) -> Image.Image:
    """Scale a single-channel high-depth image to 8 bits and replicate it to three channels."""
    values = np.asarray(img, dtype=np.float64)
    gray = np.clip(np.round(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=2))
