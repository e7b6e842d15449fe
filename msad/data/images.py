"""Robust image reading: any common file on disk becomes a ``uint8`` RGB tensor ``[3, H, W]``.

Handles grayscale, 16-bit, palette, alpha (composited on black), CMYK and YCbCr images, applies the
EXIF orientation tag, and turns every failure into one :class:`ImageReadError` whose one-line message
names the file and says what is wrong.

The common files of a detection dataset (8-bit grayscale or YCbCr JPEGs, as COCO's) are decoded by
torchvision's kernel (libjpeg-turbo, as PIL's: the same pixels, in about half the time). Everything else, and any
JPEG torchvision refuses, goes through PIL exactly as before, so PIL decides what is an error and says so. PNGs
stay with PIL: torchvision 0.29's ``decode_png`` kills the process on a corrupt chunk (CRC error) instead of
raising.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from msad.errors import DataError

__all__ = ["ImageReadError", "read_image", "pil_to_rgb", "torchvision_decodable"]


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

    A JPEG decoded by torchvision keeps its channels-last strides (copying it to a contiguous layout
    would cost a third of the decode); call ``.contiguous()`` where a layout matters.

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
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    if torchvision_decodable(data):
        image = _decode_torchvision(data)
        if image is not None:
            return image
    return _decode_pil(path, data)


def _decode_torchvision(data: bytes) -> Tensor | None:
    """RGB ``uint8 [3, H, W]`` decoded by torchvision (EXIF orientation applied); ``None`` if it refuses."""
    from torchvision.io import ImageReadMode, decode_image  # imported on first use: it takes seconds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
        try:
            encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return decode_image(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        except RuntimeError:  # truncated, corrupt or unsupported: PIL decides and says what is wrong
            return None


def _decode_pil(path: Path, data: bytes) -> Tensor:
    """RGB ``uint8 [3, H, W]`` decoded by PIL from the bytes of ``path``, any failure an :class:`ImageReadError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's EXIF / decompression chatter
            with Image.open(io.BytesIO(data)) as img:
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


_JPEG_FRAMES = (0xC0, 0xC1, 0xC2)  # baseline, extended and progressive Huffman-coded frames


def torchvision_decodable(data: bytes) -> bool:
    """Whether torchvision decodes ``data`` to the same RGB pixels as :func:`read_image`'s PIL path.

    True for 8-bit JPEGs with one (grayscale) or three (YCbCr) components in a Huffman-coded frame whose pixel
    count is within PIL's decompression-bomb limit. Everything else (CMYK, 12-bit, arithmetic-coded, PNG,
    TIFF, BMP, WebP…) is for PIL, which converts, composites, rescales or refuses it as before.
    """
    size = _jpeg_size(data)
    if size is None:
        return False
    limit = Image.MAX_IMAGE_PIXELS
    return limit is None or size[0] * size[1] <= limit


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of an 8-bit, 1- or 3-component Huffman-coded JPEG (its SOF segment), else ``None``."""
    if not data.startswith(b"\xff\xd8"):
        return None
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
            if marker not in _JPEG_FRAMES or offset + 10 > len(data):
                return None
            precision, height, width, components = struct.unpack(">BHHB", data[offset + 4 : offset + 10])
            return (width, height) if precision == 8 and components in (1, 3) else None
        if marker == 0xDA:  # start of scan before any frame: malformed
            return None
        offset += 2 + length
    return None
