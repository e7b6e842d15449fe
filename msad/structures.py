"""Plain data types shared by every part of msad.

Resolution is explicit data here: a :class:`Batch` says how large every image is inside the padded
tensor and how that frame relates to the original image, so no model ever has to guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

__all__ = ["FeatureInfo", "Target", "Batch", "LevelOutputs", "Detections", "normalize_pixels_"]


@dataclass(frozen=True)
class FeatureInfo:
    """One named feature level of a backbone or neck (timm's ``feature_info`` contract).

    Attributes:
        name: level name, e.g. ``"res3"`` for a backbone stage or ``"p3"`` for a pyramid level.
        channels: number of channels of that level's map.
        stride: input pixels per output pixel of that level.
    """

    name: str
    channels: int
    stride: int


@dataclass
class Target:
    """Ground truth of one image, in the frame of the batch tensor it travels with.

    Attributes:
        boxes: ``[M, 4]`` float boxes ``(x1, y1, x2, y2)`` in pixels of the (unpadded) batch image.
        labels: ``[M]`` int64 contiguous labels in ``[0, num_classes)``.
    """

    boxes: Tensor
    labels: Tensor

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Target:
        """Return a copy on ``device`` (``non_blocking``: an asynchronous copy from pinned memory)."""
        return Target(self.boxes.to(device, non_blocking=non_blocking), self.labels.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Target:
        """Return a copy in pinned (page-locked) memory, which a device copy can read without the host waiting."""
        return Target(self.boxes.pin_memory(), self.labels.pin_memory())

    def scaled(self, factor: float) -> Target:
        """Return a copy whose boxes are multiplied by ``factor``."""
        return Target(self.boxes * factor, self.labels)


@dataclass
class Batch:
    """A padded, normalised image batch with its ground truth and geometry.

    Attributes:
        images: ``[B, 3, H, W]`` float tensor, normalised, zero-padded at the bottom/right; or, with ``pixel_mean``
            and ``pixel_std`` set, the raw ``uint8`` pixels (zero-padded), normalised by :meth:`to` on the device.
        image_sizes: ``(h, w)`` of each image inside ``images`` before padding.
        targets: one :class:`Target` per image, boxes in the frame of ``images``.
        image_ids: dataset image id of each image (COCO ``id``), ``-1`` when unknown.
        original_sizes: ``(h, w)`` of each image as stored on disk; predictions are mapped back to it.
        pixel_mean, pixel_std: the normalisation still to apply to ``uint8`` images (``None`` once applied).
    """

    images: Tensor
    image_sizes: list[tuple[int, int]]
    targets: list[Target] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    original_sizes: list[tuple[int, int]] = field(default_factory=list)
    pixel_mean: tuple[float, float, float] | None = None
    pixel_std: tuple[float, float, float] | None = None

    def to(self, device: torch.device | str) -> Batch:
        """Return a copy with every tensor on ``device``; ``uint8`` images travel as they are (a quarter of the
        bytes of float) and are normalised there, their padding set to zero as the CPU collator does.

        Every copy is ``non_blocking``: from the pinned memory of :meth:`pin_memory` the host queues it and goes on
        (a blocking copy, or one from pageable memory, would wait for the device to finish its queued work).
        """
        images = self.images.to(device, non_blocking=True)
        if self.pixel_mean is not None and self.pixel_std is not None:
            images = _normalize(images, self.image_sizes, self.pixel_mean, self.pixel_std)
        targets = [t.to(device, non_blocking=True) for t in self.targets]
        return replace(self, images=images, targets=targets, pixel_mean=None, pixel_std=None)

    def pin_memory(self) -> Batch:
        """Return a copy whose images and targets are in pinned memory (DataLoader's ``pin_memory`` calls this)."""
        return replace(self, images=self.images.pin_memory(), targets=[t.pin_memory() for t in self.targets])

    def __len__(self) -> int:
        return self.images.shape[0]


def normalize_pixels_(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel of float images ``[..., 3, H, W]`` on 0–255 RGB, in place; returns ``images``.

    The one normalisation of msad: the CPU collator, :meth:`Batch.to` on the device and the exported graph all
    call it, so that they give the same values bit for bit. Only Python numbers reach the kernels (no small
    host-to-device copies, which would wait for the device).
    """
    for c, (m, s) in enumerate(zip(mean, std, strict=True)):
        images[..., c, :, :].sub_(float(m)).div_(float(s))
    return images


def _normalize(
    images: Tensor, sizes: list[tuple[int, int]], mean: tuple[float, float, float], std: tuple[float, float, float]
) -> Tensor:
    """:func:`normalize_pixels_` of ``uint8`` images on their device, zero outside each image's ``(h, w)``."""
    out = normalize_pixels_(images.float(), mean, std)
    for i, (h, w) in enumerate(sizes):
        out[i, :, h:, :] = 0.0
        out[i, :, :h, w:] = 0.0
    return out


@dataclass
class LevelOutputs:
    """Raw head outputs of one pyramid level.

    Attributes:
        cls_logits: ``[B, C, H, W]`` classification logits.
        box_regression: ``[B, 4, H, W]`` non-negative ``(l, t, r, b)`` distances in units of the level's stride.
        centerness: ``[B, 1, H, W]`` centerness logits.
    """

    cls_logits: Tensor
    box_regression: Tensor
    centerness: Tensor


@dataclass
class Detections:
    """Final detections of one image.

    Attributes:
        boxes: ``[K, 4]`` float ``(x1, y1, x2, y2)``.
        scores: ``[K]`` float scores in ``[0, 1]``.
        labels: ``[K]`` int64 contiguous labels.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def to(self, device: torch.device | str) -> Detections:
        """Return a copy on ``device``."""
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))

    def scaled(self, sx: float, sy: float) -> Detections:
        """Return a copy with x coordinates multiplied by ``sx`` and y by ``sy``."""
        factor = self.boxes.new_tensor([sx, sy, sx, sy])
        return Detections(self.boxes * factor, self.scores, self.labels)
