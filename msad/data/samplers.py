"""Exact-resume samplers: the training stream (plain or grouped by aspect ratio) and the inference shards.

Training reads an endless stream of dataset indices made of per-epoch permutations
``torch.randperm(n, generator=manual_seed(seed + epoch))``. Global iteration ``i`` consumes stream
positions ``[i·B, (i+1)·B)``; rank ``r`` of ``R`` takes the contiguous slice ``[r·B/R, (r+1)·B/R)`` of it.
Every element is ``(dataset_index, aug_seed)`` with ``aug_seed`` a hash of ``(seed, position)``, so a
batch is a pure function of ``(seed, iteration, rank, world_size)`` and resuming at iteration ``k``
reproduces the uninterrupted run exactly.

With aspect-ratio grouping (:class:`AspectRatioGroupedBatchSampler`, as detectron2's ``AspectRatioGroupedDataset``)
the same stream is dealt into two buckets, landscape (``w > h``) and portrait (``w <= h``), and a per-rank batch is
emitted when its bucket is full: global iteration ``i`` is groups ``[i·R, (i+1)·R)`` of that emission order, rank
``r`` taking group ``i·R + r``. Every stream element still lands in exactly one batch of one rank, with the
augmentation seed of its stream position, and a batch is still a pure function of its arguments.

The DataLoaders that draw from these samplers are in :mod:`msad.data.loaders`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "TrainBatchSampler",
    "AspectRatioGroupedBatchSampler",
    "InferenceSampler",
    "aug_seed",
]

_MASK64 = (1 << 64) - 1


def aug_seed(seed: int, position: int) -> int:
    """Augmentation seed of stream ``position`` under ``seed`` (splitmix64 of both, 63 bits)."""
    z = (seed * 0x9E3779B97F4A7C15 + position + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


class TrainBatchSampler:
    """Infinite per-rank batches of ``(dataset_index, aug_seed)``; see the module docstring for the stream.

    Args:
        dataset_size: number of dataset items ``n`` (> 0).
        total_batch_size: global batch size ``B`` over all ranks; must be divisible by ``world_size``.
        rank: this process's rank.
        world_size: number of ranks.
        seed: base seed of the permutations and augmentation seeds.
        start_iter: first global iteration to yield (resume).
    """

    def __init__(
        self,
        dataset_size: int,
        *,
        total_batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        start_iter: int = 0,
    ) -> None:
        if dataset_size <= 0:
            raise ValueError(f"dataset_size must be positive, got {dataset_size}")
        if total_batch_size <= 0 or world_size <= 0:
            raise ValueError(f"total_batch_size and world_size must be positive, got {total_batch_size}, {world_size}")
        if total_batch_size % world_size:
            raise ValueError(f"total_batch_size {total_batch_size} is not divisible by world_size {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world_size {world_size}")
        if start_iter < 0:
            raise ValueError(f"start_iter must be >= 0, got {start_iter}")
        self.dataset_size = dataset_size
        self.total_batch_size = total_batch_size
        self.batch_size = total_batch_size // world_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_iter = start_iter
        self._cached_epoch = -1
        self._cached_perm: list[int] = []

    def permutation(self, epoch: int) -> torch.Tensor:
        """The index order of ``epoch``: ``torch.randperm(n)`` under ``manual_seed(seed + epoch)``."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.dataset_size, generator=generator)

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        """This rank's share of global iteration ``iteration`` (a pure function of its arguments)."""
        first = iteration * self.total_batch_size + self.rank * self.batch_size
        return [self._element(p) for p in range(first, first + self.batch_size)]

    def _element(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.dataset_size)
        if self._cached_epoch != epoch:
            self._cached_perm = self.permutation(epoch).tolist()
            self._cached_epoch = epoch
        return self._cached_perm[offset], aug_seed(self.seed, position)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        iteration = self.start_iter
        while True:
            yield self.batch(iteration)
            iteration += 1


class AspectRatioGroupedBatchSampler(TrainBatchSampler):
    """:class:`TrainBatchSampler`'s stream batched by orientation: every per-rank batch is all landscape or all portrait.

    The stream's elements are dealt in order into a landscape and a portrait bucket; a bucket that reaches the
    per-rank batch size ``b`` is emitted as one group (detectron2's ``AspectRatioGroupedDataset``, run once over the
    global stream, so the ranks' batches stay disjoint). The groups of each epoch are computed at once from the
    epoch's permutation and the elements the previous epoch left in the buckets, so resuming at iteration ``k``
    replays whole epochs of indices (no data), not batches.

    Args:
        landscape: ``[n]`` booleans, ``True`` where image ``i`` is wider than high.
        **kwargs: as :class:`TrainBatchSampler`.
    """

    def __init__(self, dataset_size: int, *, landscape: Sequence[bool] | np.ndarray, **kwargs: int) -> None:
        super().__init__(dataset_size, **kwargs)
        self.landscape = np.asarray(landscape, dtype=bool).reshape(-1)
        if len(self.landscape) != dataset_size:
            raise ValueError(f"landscape has {len(self.landscape)} entries for a dataset of {dataset_size}")
        self._restart()

    def _restart(self) -> None:
        """Forget every computed epoch: the next group looked up is found from epoch 0."""
        self._epoch = -1
        self._first_group = 0  # global index of the first group of self._epoch
        self._groups = np.zeros((0, 2, self.batch_size), dtype=np.int64)  # [G, (index, position), b]
        self._carry = np.zeros((2, 0), dtype=np.int64)  # (index, position) of the elements left in the buckets

    def _next_epoch(self) -> None:
        """Group the next epoch's elements (after the carried ones) and keep what is left in the buckets."""
        self._first_group += len(self._groups)
        self._epoch += 1
        n, b = self.dataset_size, self.batch_size
        stream = np.concatenate([
            self._carry,
            np.stack([self.permutation(self._epoch).numpy(), self._epoch * n + np.arange(n)]),
        ], axis=1)
        full, ends, left = [], [], []
        for bucket in (self.landscape[stream[0]], ~self.landscape[stream[0]]):
            members = np.flatnonzero(bucket)
            count = len(members) // b * b
            full.append(members[:count].reshape(-1, b))
            ends.append(members[b - 1:count:b])  # where each group fills up: the order of emission
            left.append(members[count:])
        order = np.argsort(np.concatenate(ends), kind="stable")
        members = np.concatenate(full)[order]
        self._groups = stream[:, members].transpose(1, 0, 2)
        self._carry = stream[:, np.sort(np.concatenate(left))]

    def _group(self, group: int) -> np.ndarray:
        """``[2, b]`` (index, position) of global group ``group``."""
        if group < self._first_group:
            self._restart()
        while group >= self._first_group + len(self._groups):
            self._next_epoch()
        return self._groups[group - self._first_group]

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        """This rank's group of global iteration ``iteration`` (a pure function of its arguments)."""
        indices, positions = self._group(iteration * self.world_size + self.rank).tolist()
        return [(index, aug_seed(self.seed, position)) for index, position in zip(indices, positions, strict=True)]


class InferenceSampler(Sampler[int]):
    """Contiguous shard of ``range(size)`` for ``rank``: every index is seen exactly once across ranks.

    Shard sizes differ by at most one (the first ``size % world_size`` ranks take one more).
    """

    def __init__(self, size: int, *, rank: int, world_size: int) -> None:
        if size < 0 or world_size <= 0 or not 0 <= rank < world_size:
            raise ValueError(f"invalid InferenceSampler(size={size}, rank={rank}, world_size={world_size})")
        base, extra = divmod(size, world_size)
        self.begin = rank * base + min(rank, extra)
        self.end = self.begin + base + (1 if rank < extra else 0)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))

    def __len__(self) -> int:
        return self.end - self.begin
