"""Collate: normalisation and padding by hand numbers, metadata, picklability."""

from __future__ import annotations

import pickle

import pytest
import torch

from msad.data.collate import PIXEL_MEAN, PIXEL_STD, Collator, collate, padded_size
from msad.structures import Batch, Target


def _item(value: int, h: int, w: int, image_id: int) -> tuple:
    target = Target(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([image_id]))
    meta = {"image_id": image_id, "original_size": (2 * h, 2 * w), "size": (h, w)}
    return torch.full((3, h, w), value, dtype=torch.uint8), target, meta


def test_padding_and_normalisation_values() -> None:
    items = [_item(10, 5, 7, 1), _item(20, 9, 3, 2)]
    batch = collate(items, size_divisibility=4, pixel_mean=(10.0, 0.0, 20.0), pixel_std=(1.0, 2.0, 4.0))
    assert isinstance(batch, Batch)
    assert batch.images.shape == (2, 3, 12, 8)  # max (9, 7) rounded up to 4
    assert batch.image_sizes == [(5, 7), (9, 3)]
    first, second = batch.images
    assert first[:, :5, :7].flatten(1).unique(dim=1).squeeze(1).tolist() == [0.0, 5.0, -2.5]
    assert second[:, 0, 0].tolist() == [10.0, 10.0, 0.0]
    assert first[:, 5:].abs().sum() == 0 and first[:, :, 7:].abs().sum() == 0  # zero padding
    assert second[:, 9:].abs().sum() == 0 and second[:, :, 3:].abs().sum() == 0
    assert batch.image_ids == [1, 2]
    assert batch.original_sizes == [(10, 14), (18, 6)]
    assert [t.labels.item() for t in batch.targets] == [1, 2]


def test_default_imagenet_statistics() -> None:
    batch = collate([_item(128, 2, 2, 1)])
    assert batch.images.shape == (1, 3, 32, 32)
    expected = torch.tensor([(128 - 123.675) / 58.395, (128 - 116.28) / 57.12, (128 - 103.53) / 57.375])
    assert torch.allclose(batch.images[0, :, 0, 0], expected)


def test_no_divisibility_and_exact_multiple() -> None:
    assert padded_size([(5, 7)], 0) == (5, 7)
    assert padded_size([(64, 32), (33, 1)], 32) == (64, 32)


def test_collator_pickles_and_drops_skipped_items() -> None:
    collator = pickle.loads(pickle.dumps(Collator(size_divisibility=8)))
    batch = collator([None, _item(0, 3, 3, 4)])
    assert len(batch) == 1 and batch.image_ids == [4] and batch.images.shape == (1, 3, 8, 8)
    empty = collator([None])
    assert len(empty) == 0 and empty.image_sizes == []


def test_missing_meta_defaults() -> None:
    image, target, _ = _item(0, 3, 4, 1)
    batch = collate([(image, target, {})], size_divisibility=1)
    assert batch.image_ids == [-1] and batch.original_sizes == [(3, 4)]


@pytest.mark.parametrize("divisibility", [32, 256])
def test_large_divisibility(divisibility: int) -> None:
    batch = collate([_item(0, 33, 300, 1)], size_divisibility=divisibility)
    assert batch.images.shape[-2] % divisibility == 0 and batch.images.shape[-1] % divisibility == 0


def test_uint8_batches_are_normalised_on_the_device_exactly_as_on_the_cpu():
    import torch as _torch

    from msad.data.collate import Collator
    from msad.structures import Target as _Target

    g = _torch.Generator().manual_seed(0)
    items = [
        (_torch.randint(0, 256, (3, h, w), generator=g, dtype=_torch.uint8), _Target(_torch.zeros(0, 4), _torch.zeros(0, dtype=_torch.int64)), {})
        for h, w in ((50, 70), (64, 41))
    ]
    cpu = Collator(size_divisibility=32)(items)
    raw = Collator(size_divisibility=32, normalize_on_device=True)(items)
    assert raw.images.dtype == _torch.uint8 and raw.pixel_mean is not None
    assert raw.images.element_size() * 4 == cpu.images.element_size()  # a quarter of the bytes to copy
    moved = raw.to("cpu")
    assert moved.images.dtype == _torch.float32 and moved.pixel_mean is None and moved.pixel_std is None
    assert _torch.equal(moved.images, cpu.images)  # padding zero, values identical
    assert _torch.equal(moved.to("cpu").images, cpu.images)  # normalised once only


@pytest.mark.parametrize("normalize", [True, False])
def test_channels_last_images_collate_like_contiguous_ones(normalize: bool) -> None:
    """torchvision's decoders and uint8 resize give channels-last strides: same batch, values as the formula."""
    pixels = torch.randint(0, 256, (2, 7, 9, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    strided = [(img.permute(2, 0, 1), *_item(0, 7, 9, i)[1:]) for i, img in enumerate(pixels)]
    assert not strided[0][0].is_contiguous()
    batch = collate(strided, size_divisibility=4, normalize=normalize)
    reference = collate([(img.contiguous(), t, m) for img, t, m in strided], size_divisibility=4, normalize=normalize)
    assert torch.equal(batch.images, reference.images)
    if normalize:
        mean, std = torch.tensor(PIXEL_MEAN).view(3, 1, 1), torch.tensor(PIXEL_STD).view(3, 1, 1)
        assert torch.equal(batch.images[0, :, :7, :9], (strided[0][0].float() - mean) / std)
