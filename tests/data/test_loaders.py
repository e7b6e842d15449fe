"""Loaders: exact resume, inference shards without empty batches, aspect-ratio grouping only when asked."""

from __future__ import annotations

import gc
import itertools

import torch

from msad.data.collate import Collator
from msad.data.loaders import build_test_loader, build_train_loader, freeze_before_fork
from msad.data.samplers import TrainBatchSampler
from msad.structures import Target


def _take(sampler: TrainBatchSampler, count: int) -> list[list[tuple[int, int]]]:
    return list(itertools.islice(iter(sampler), count))


class _Toy(torch.utils.data.Dataset):
    """Item ``i`` (optionally with a seed) is an image filled with ``i``; index 3 is a skipped image."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, key)
        if index == 3 and not isinstance(key, tuple):
            return None
        target = Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
        return torch.full((3, 4, 4), index, dtype=torch.uint8), target, {"image_id": index, "aug_seed": seed}


def test_build_train_loader_resumes_exactly() -> None:
    kwargs = dict(total_batch_size=2, rank=0, world_size=1, seed=4, num_workers=0, collate=Collator())
    full = [b.image_ids for b in itertools.islice(build_train_loader(_Toy(), start_iter=0, **kwargs), 6)]
    resumed = [b.image_ids for b in itertools.islice(build_train_loader(_Toy(), start_iter=4, **kwargs), 2)]
    assert resumed == full[4:]


def test_build_test_loader_shards_and_skips_empty_batches() -> None:
    ids = []
    for rank in range(2):
        loader = build_test_loader(_Toy(), batch_size=1, rank=rank, world_size=2, num_workers=0, collate=Collator())
        ids += [b.image_ids for b in loader]
    assert ids == [[0], [1], [2], [4]]  # index 3 skipped: its empty batch is left out


def test_build_train_loader_groups_only_when_asked() -> None:
    kwargs = dict(total_batch_size=2, rank=0, world_size=1, seed=4, num_workers=0, collate=Collator())
    plain = [b.image_ids for b in itertools.islice(build_train_loader(_Toy(), **kwargs), 8)]
    stream = _take(TrainBatchSampler(5, total_batch_size=2, rank=0, world_size=1, seed=4), 8)
    assert plain == [[i for i, _ in batch] for batch in stream]  # off: today's stream
    landscape = [True, False, True, False, False]
    grouped = [b.image_ids for b in itertools.islice(build_train_loader(_Toy(), landscape=landscape, **kwargs), 8)]
    assert grouped != plain and all(landscape[a] == landscape[b] for a, b in grouped)


def test_freeze_before_fork_only_with_workers() -> None:
    gc.unfreeze()
    try:
        freeze_before_fork(0)
        assert gc.get_freeze_count() == 0
        freeze_before_fork(2)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
