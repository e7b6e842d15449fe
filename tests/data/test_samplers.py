"""Samplers: exact resume, rank union, epoch permutations, aspect-ratio groups, inference sharding."""

from __future__ import annotations

import itertools

import pytest
import torch

from msad.data.samplers import (
    AspectRatioGroupedBatchSampler,
    InferenceSampler,
    TrainBatchSampler,
    aug_seed,
)


def _take(sampler: TrainBatchSampler, count: int) -> list[list[tuple[int, int]]]:
    return list(itertools.islice(iter(sampler), count))


def test_resume_yields_exactly_the_uninterrupted_stream() -> None:
    full = _take(TrainBatchSampler(7, total_batch_size=4, rank=0, world_size=1, seed=3), 12)
    for k in (1, 5, 7, 11):
        resumed = _take(TrainBatchSampler(7, total_batch_size=4, rank=0, world_size=1, seed=3, start_iter=k), 12 - k)
        assert resumed == full[k:]


def test_union_over_ranks_is_the_single_rank_batch() -> None:
    single = _take(TrainBatchSampler(10, total_batch_size=6, rank=0, world_size=1, seed=1), 8)
    per_rank = [_take(TrainBatchSampler(10, total_batch_size=6, rank=r, world_size=3, seed=1), 8) for r in range(3)]
    for i in range(8):
        assert [e for r in range(3) for e in per_rank[r][i]] == single[i]
        assert all(len(per_rank[r][i]) == 2 for r in range(3))


def test_stream_is_concatenated_epoch_permutations() -> None:
    n, seed = 5, 9
    batches = _take(TrainBatchSampler(n, total_batch_size=2, rank=0, world_size=1, seed=seed), 10)
    indices = [i for b in batches for i, _ in b]
    perms = [torch.randperm(n, generator=torch.Generator().manual_seed(seed + e)).tolist() for e in range(4)]
    expected = [p for perm in perms for p in perm]
    assert indices == expected[:20]
    assert sorted(indices[:5]) == list(range(5)) and sorted(indices[5:10]) == list(range(5))
    seeds = [s for b in batches for _, s in b]
    assert seeds == [aug_seed(seed, p) for p in range(20)]
    assert len(set(seeds)) == 20 and all(0 <= s < 2**63 for s in seeds)


def test_different_seeds_differ() -> None:
    a = _take(TrainBatchSampler(50, total_batch_size=10, rank=0, world_size=1, seed=0), 1)
    b = _take(TrainBatchSampler(50, total_batch_size=10, rank=0, world_size=1, seed=1), 1)
    assert [i for i, _ in a[0]] != [i for i, _ in b[0]]


def test_train_sampler_validation() -> None:
    with pytest.raises(ValueError, match="divisible"):
        TrainBatchSampler(10, total_batch_size=5, rank=0, world_size=2, seed=0)
    with pytest.raises(ValueError):
        TrainBatchSampler(0, total_batch_size=2, rank=0, world_size=1, seed=0)
    with pytest.raises(ValueError):
        TrainBatchSampler(3, total_batch_size=2, rank=2, world_size=2, seed=0)


@pytest.mark.parametrize(("size", "world"), [(10, 3), (2, 4), (0, 2), (8, 1)])
def test_inference_sampler_covers_every_index_once(size: int, world: int) -> None:
    shards = [list(InferenceSampler(size, rank=r, world_size=world)) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(size))  # contiguous and in order
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(InferenceSampler(size, rank=r, world_size=world)) for r in range(world)] == list(map(len, shards))


def _bucketed_reference(landscape: list[bool], batch: int, seed: int, groups: int) -> list[list[tuple[int, int]]]:
    """detectron2's AspectRatioGroupedDataset over the ungrouped one-element-at-a-time stream."""
    stream = iter(TrainBatchSampler(len(landscape), total_batch_size=1, rank=0, world_size=1, seed=seed))
    buckets: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
    out = []
    while len(out) < groups:
        element = next(stream)[0]
        bucket = buckets[landscape[element[0]]]
        bucket.append(element)
        if len(bucket) == batch:
            out.append(bucket[:])
            del bucket[:]
    return out


@pytest.mark.parametrize(("n", "world", "per_rank"), [(13, 2, 3), (5, 1, 4), (40, 4, 2)])
def test_grouped_batches_are_detectron2_buckets_dealt_to_ranks(n: int, world: int, per_rank: int) -> None:
    landscape = [bool(v) for v in torch.rand(n, generator=torch.Generator().manual_seed(n)).lt(0.7)]
    iters = 30
    reference = _bucketed_reference(landscape, per_rank, seed=5, groups=iters * world)
    samplers = [
        AspectRatioGroupedBatchSampler(n, landscape=landscape, total_batch_size=per_rank * world, rank=r,
                                       world_size=world, seed=5)
        for r in range(world)
    ]
    got = [samplers[r].batch(i) for i in range(iters) for r in range(world)]
    assert got == reference  # rank r of iteration i holds group i·R + r, augmentation seeds of the stream positions
    assert all(len({landscape[i] for i, _ in batch}) == 1 for batch in got)  # never mixed
    seeds = [s for batch in got for _, s in batch]
    assert len(set(seeds)) == len(seeds)  # every stream element in one batch of one rank


def test_grouped_stream_resumes_exactly_and_is_pure() -> None:
    landscape = [i % 3 != 0 for i in range(11)]
    kwargs = dict(landscape=landscape, total_batch_size=4, rank=1, world_size=2, seed=2)
    full = _take(AspectRatioGroupedBatchSampler(11, **kwargs), 25)
    for k in (1, 6, 19):
        assert _take(AspectRatioGroupedBatchSampler(11, start_iter=k, **kwargs), 25 - k) == full[k:]
    sampler = AspectRatioGroupedBatchSampler(11, **kwargs)
    assert [sampler.batch(i) for i in (20, 3, 20, 0)] == [full[20], full[3], full[20], full[0]]  # any order


def test_one_orientation_groups_to_the_ungrouped_stream() -> None:
    kwargs = dict(total_batch_size=6, rank=0, world_size=2, seed=7)
    plain = _take(TrainBatchSampler(9, **kwargs), 10)
    assert _take(AspectRatioGroupedBatchSampler(9, landscape=[True] * 9, **kwargs), 10) == plain
    with pytest.raises(ValueError, match="landscape has 3 entries"):
        AspectRatioGroupedBatchSampler(9, landscape=[True] * 3, **kwargs)
