"""Evaluation batches: every image is predicted with the padding it would get alone."""

from __future__ import annotations

import torch

from msad.data.collate import collate
from msad.structures import Target
from msad.tasks.evaluation_loop import unpadded_groups


def _item(h: int, w: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator)
    return image, Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)), {"image_id": seed}


def test_groups_are_the_images_padded_alone() -> None:
    items = [_item(40, 60, 0), _item(64, 100, 1), _item(50, 64, 2)]
    batch = collate(items, size_divisibility=32)
    assert tuple(batch.images.shape[-2:]) == (64, 128)
    groups = unpadded_groups(batch.images, batch.image_sizes, 32)
    # 40×60 and 50×64 both pad to 64×64 alone; 64×100 pads to 64×128
    assert sorted(indices for indices, _ in groups) == [[0, 2], [1]]
    for indices, images in groups:
        for row, index in enumerate(indices):
            alone = collate([items[index]], size_divisibility=32).images[0]
            assert torch.equal(images[row], alone)
