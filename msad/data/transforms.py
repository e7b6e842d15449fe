"""Detection transforms whose randomness comes only from an explicit ``torch.Generator``.

Every transform is a callable ``(image, target, generator) -> (image, target)`` on a ``uint8`` image
``[3, H, W]`` and a :class:`~msad.structures.Target` with ``xyxy`` boxes in that image's pixels.
``generator=None`` means evaluation: deterministic behaviour (largest short side, no flip). With a
generator, the transform draws from it and nothing else, so augmentation is a pure function of its seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from msad.structures import Target

__all__ = [
    "Transform",
    "Compose",
    "ResizeShortestEdge",
    "RandomHorizontalFlip",
    "resized_shape",
    "build_transforms",
]


class Transform(Protocol):
    """The transform contract: ``(image, target, generator) -> (image, target)``."""

    def __call__(self, image: Tensor, target: Target, generator: torch.Generator | None) -> tuple[Tensor, Target]:
        """Transform ``image`` and its ``target`` consistently."""
        ...


class Compose:
    """Apply transforms in order, threading the same generator through all of them."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target, generator: torch.Generator | None) -> tuple[Tensor, Target]:
        """Apply every transform in turn."""
        for transform in self.transforms:
            image, target = transform(image, target, generator)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def resized_shape(height: int, width: int, short_size: int, max_size: int, scale: float = 1.0) -> tuple[int, int]:
    """Output ``(h, w)`` of resizing ``(height, width)`` to ``short_size`` with the long side capped, times ``scale``.

    The short side becomes ``short_size`` unless that makes the long side exceed ``max_size``, in which case
    the long side becomes ``max_size``; each side is rounded to the nearest integer, then multiplied by
    ``scale`` (the low-resolution factor) and rounded again, never below 1 pixel.
    """
    factor = short_size / min(height, width)
    if max(height, width) * factor > max_size:
        factor = max_size / max(height, width)
    new_h, new_w = int(height * factor + 0.5), int(width * factor + 0.5)
    if scale != 1.0:
        new_h, new_w = int(new_h * scale + 0.5), int(new_w * scale + 0.5)
    return max(new_h, 1), max(new_w, 1)


class ResizeShortestEdge:
    """Resize so that the short side is one of ``short_sizes`` and the long side at most ``max_size``.

    Args:
        short_sizes: candidate short-side lengths; one is drawn uniformly with the generator in training,
            the largest is used in evaluation (``generator=None``).
        max_size: cap on the long side (before ``scale``).
        scale: extra resolution factor applied after the resize, e.g. ``0.5`` for a low-resolution baseline.

    The ``uint8`` image is resized bilinearly (antialiased) by :func:`resize_image`; boxes are scaled by the
    exact per-axis factors ``new_w / w`` and ``new_h / h``.
    """

    def __init__(self, short_sizes: Sequence[int], max_size: int, *, scale: float = 1.0) -> None:
        sizes = [int(s) for s in (short_sizes if isinstance(short_sizes, Sequence) else [short_sizes])]
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"short_sizes must be a non-empty list of positive ints, got {short_sizes!r}")
        if max_size <= 0 or scale <= 0:
            raise ValueError(f"max_size and scale must be positive, got max_size={max_size}, scale={scale}")
        self.short_sizes = sizes
        self.max_size = int(max_size)
        self.scale = float(scale)

    def _short_size(self, generator: torch.Generator | None) -> int:
        if generator is None or len(self.short_sizes) == 1:
            return max(self.short_sizes)
        choice = int(torch.randint(len(self.short_sizes), (1,), generator=generator))
        return self.short_sizes[choice]

    def __call__(self, image: Tensor, target: Target, generator: torch.Generator | None) -> tuple[Tensor, Target]:
        """Resize ``image`` and scale ``target.boxes`` by the same per-axis factors."""
        height, width = image.shape[-2:]
        new_h, new_w = resized_shape(height, width, self._short_size(generator), self.max_size, self.scale)
        if (new_h, new_w) != (height, width):
            image = resize_image(image, new_h, new_w)
        factors = target.boxes.new_tensor([new_w / width, new_h / height, new_w / width, new_h / height])
        return image, Target(target.boxes * factors, target.labels)

    def __repr__(self) -> str:
        return f"ResizeShortestEdge({self.short_sizes}, max_size={self.max_size}, scale={self.scale})"


def resize_image(image: Tensor, height: int, width: int) -> Tensor:
    """Bilinear, antialiased resize of a ``uint8`` image ``[3, H, W]`` to ``[3, height, width]``.

    torchvision's ``v2.functional.resize`` works on the ``uint8`` pixels directly on the CPU (no float round
    trip; its values are within one level of resizing in float and rounding). The result may have
    channels-last strides (as torchvision's decoders give): call ``.contiguous()`` where a layout matters.
    """
    from torchvision.transforms.v2.functional import resize  # imported on first use: it takes seconds

    return resize(image, [height, width], antialias=True)


class RandomHorizontalFlip:
    """Flip left-right with probability ``p`` (drawn from the generator; never in evaluation)."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, image: Tensor, target: Target, generator: torch.Generator | None) -> tuple[Tensor, Target]:
        """Maybe flip ``image``; boxes map ``x1, x2 -> w - x2, w - x1``."""
        if generator is None:
            return image, target
        if float(torch.rand((), generator=generator)) >= self.p:
            return image, target
        width = image.shape[-1]
        boxes = target.boxes.clone()
        boxes[:, 0] = width - target.boxes[:, 2]
        boxes[:, 2] = width - target.boxes[:, 0]
        return image.flip(-1), Target(boxes, target.labels)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def build_transforms(
    *, train: bool, short_sizes: Sequence[int], max_size: int, scale: float = 1.0, flip_prob: float = 0.5
) -> Compose:
    """The standard detection pipeline: resize (random short side in training) then, in training, flip."""
    transforms: list[Transform] = [ResizeShortestEdge(short_sizes, max_size, scale=scale)]
    if train and flip_prob > 0:
        transforms.append(RandomHorizontalFlip(flip_prob))
    return Compose(transforms)
