"""``msad.export.deploy``: the exported graph normalises its input exactly as evaluation's collator does."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from msad.data.collate import PIXEL_MEAN, PIXEL_STD, collate
from msad.export.deploy import DeployModel, DeploySpec
from msad.levels import HEAD_LEVELS, level_stride
from msad.structures import LevelOutputs, Target


class _Probe(nn.Module):
    """Stands for the detector: returns its (normalised) input as every head output."""

    def forward(self, x: Tensor) -> dict[str, LevelOutputs]:
        return {lvl: LevelOutputs(x, x, x) for lvl in HEAD_LEVELS}


def _spec() -> DeploySpec:
    return DeploySpec(
        role="baseline", input_frame="hr", input_factor=1, box_scale=1.0, size_divisibility=1, levels=HEAD_LEVELS,
        strides={lvl: level_stride(lvl) for lvl in HEAD_LEVELS}, classes=["c"], category_ids=[1],
        pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD, postprocess={}, resize=None, width=None,
    )


@pytest.fixture(scope="module")
def every_pixel() -> tuple[Tensor, Tensor]:
    """``(uint8 image holding each value 0-255 in each channel, the collator's normalised batch of it)``."""
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 16, 16).repeat(3, 1, 1)
    empty = Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    return pixels, collate([(pixels, empty, {})], size_divisibility=1).images


def test_the_graph_normalises_as_the_collator_bit_for_bit(every_pixel: tuple[Tensor, Tensor]) -> None:
    pixels, expected = every_pixel
    graph = DeployModel(_Probe(), _spec()).eval()
    images = pixels.float()[None]
    assert torch.equal(graph(images)[0], expected)  # x·(1/std) differed from x/std in 214 of these 768 values
    assert torch.equal(images, pixels.float()[None])  # the caller's tensor is left as it was
    exported = torch.export.export(graph, (images,)).module()
    assert torch.equal(exported(images)[0], expected)
