"""Batching: normalise, zero-pad to a common size divisible by ``size_divisibility``, build a :class:`Batch`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from msad.structures import Batch, Target, normalize_pixels_

__all__ = ["Collator", "collate", "PIXEL_MEAN", "PIXEL_STD"]

#: ImageNet statistics on 0–255 RGB
PIXEL_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
PIXEL_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)

Item = tuple[Tensor, Target, dict[str, Any]]


@dataclass(frozen=True)
class Collator:
    """Picklable batch collator (safe to hand to DataLoader workers).

    Attributes:
        size_divisibility: the padded height and width are rounded up to a multiple of this (``<= 1``: no rounding).
        pixel_mean: per-channel mean subtracted from 0–255 RGB.
        pixel_std: per-channel standard deviation divided by.
        normalize_on_device: leave the padded images ``uint8`` (a quarter of the bytes to pin and copy) and let
            :meth:`Batch.to` normalise them on the device; the training loader uses this.

    ``None`` items (images skipped during evaluation) are dropped; an all-``None`` list gives an empty batch.
    """

    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN
    pixel_std: tuple[float, float, float] = PIXEL_STD
    normalize_on_device: bool = False

    def __call__(self, items: Sequence[Item | None]) -> Batch:
        """Collate dataset items ``(image uint8 [3, h, w], target, meta)`` into a normalised, padded batch."""
        return collate(
            items, size_divisibility=self.size_divisibility, pixel_mean=self.pixel_mean, pixel_std=self.pixel_std,
            normalize=not self.normalize_on_device,
        )


def padded_size(sizes: Sequence[tuple[int, int]], size_divisibility: int) -> tuple[int, int]:
    """The ``(H, W)`` that holds every ``(h, w)`` of ``sizes``, rounded up to ``size_divisibility``."""
    height = max(h for h, _ in sizes)
    width = max(w for _, w in sizes)
    if size_divisibility > 1:
        height = math.ceil(height / size_divisibility) * size_divisibility
        width = math.ceil(width / size_divisibility) * size_divisibility
    return height, width


def collate(
    items: Sequence[Item | None],
    *,
    size_divisibility: int = 32,
    pixel_mean: Sequence[float] = PIXEL_MEAN,
    pixel_std: Sequence[float] = PIXEL_STD,
    normalize: bool = True,
) -> Batch:
    """Normalise ``(x - mean) / std``, zero-pad bottom/right, and gather targets and geometry into a :class:`Batch`.

    Args:
        items: dataset items ``(image uint8 [3, h, w], Target, meta)`` with meta keys ``image_id`` and
            ``original_size`` (both optional: ``-1`` and the image size by default); ``None`` items are dropped.
        size_divisibility: pad height and width up to a multiple of this.
        pixel_mean: per-channel mean on 0–255 RGB.
        pixel_std: per-channel standard deviation on 0–255 RGB.
        normalize: ``False`` keeps the images ``uint8`` (zero-padded) and records the normalisation in the batch,
            for :meth:`Batch.to` to apply on the device.
    """
    present = [item for item in items if item is not None]
    if not present:
        return Batch(images=torch.zeros(0, 3, 0, 0), image_sizes=[])
    sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img, _, _ in present]
    height, width = padded_size(sizes, size_divisibility)
    images = torch.zeros(len(present), 3, height, width, dtype=torch.float32 if normalize else torch.uint8)
    for out, (img, _, _), (h, w) in zip(images, present, sizes, strict=True):
        region = out[:, :h, :w]
        region.copy_(img)  # any layout (torchvision's decoders give channels-last strides), converted in one pass
        if normalize:
            normalize_pixels_(region, pixel_mean, pixel_std)  # in place: the same values as (img.float() - mean) / std
    deferred = {} if normalize else {"pixel_mean": tuple(map(float, pixel_mean)), "pixel_std": tuple(map(float, pixel_std))}
    return Batch(
        images=images,
        image_sizes=sizes,
        targets=[target for _, target, _ in present],
        image_ids=[int(meta.get("image_id", -1)) for _, _, meta in present],
        original_sizes=[tuple(meta.get("original_size", size)) for (_, _, meta), size in zip(present, sizes, strict=True)],
        **deferred,
    )
