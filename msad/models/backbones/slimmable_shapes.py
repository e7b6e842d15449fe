"""Shape facts of the slimmable bottleneck ResNet, shared by the network, its checkpoint layouts and the converters.

A leaf module (no msad imports), so that the network (:mod:`~msad.models.backbones.slimmable_resnet`) can import
its weight-file readers (:mod:`~msad.models.backbones.slimmable_checkpoint`) without an import circle.
"""

from __future__ import annotations

__all__ = ["DEPTHS", "DEFAULT_WIDTHS", "STEM_CHANNELS", "STAGE_CHANNELS", "channels_at"]

#: Blocks per stage (res2…res5) for each supported depth.
DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
#: The width list of the public slimmable_networks checkpoints.
DEFAULT_WIDTHS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
#: Full-width output channels of the stem and of stages res2…res5.
STEM_CHANNELS = 64
STAGE_CHANNELS: tuple[int, int, int, int] = (256, 512, 1024, 2048)


def channels_at(channels: int, width: float) -> int:
    """Channel count of a full-width ``channels`` position at width ``width``: ``int(channels * width)``."""
    return int(channels * width)
