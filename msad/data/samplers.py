"""Exact-resume sampling and the train / test data loaders.

Training reads an endless stream of dataset indices made of per-epoch permutations
``torch.randperm(n, generator=manual_seed(seed + epoch))``. Global iteration ``i`` consumes stream
positions ``[i·B, (i+1)·B)``; rank ``r`` of ``R`` takes the contiguous slice ``[r·B/R, (r+1)·B/R)`` of it.
Every element is ``(dataset_index, aug_seed)`` with ``aug_seed`` a hash of ``(seed, position)``, so a
batch is a pure function of ``(seed, iteration, rank, world_size)`` and resuming at iteration ``k``
reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from msad.structures import Batch

__all__ = [
    "TrainBatchSampler",
    "InferenceSampler",
    "aug_seed",
    "build_train_loader",
    "build_test_loader",
    "freeze_before_fork",
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


def _loader_kwargs(num_workers: int, pin_memory: bool | None = None) -> dict:
    return {
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "pin_memory": torch.cuda.is_available() if pin_memory is None else pin_memory,
    }


def freeze_before_fork(num_workers: int) -> None:
    """Before data workers are forked: collect garbage, then move every live object to the GC's permanent generation.

    Forked workers share the parent's memory pages until they are written to. A collection in a worker writes to
    the GC header of every object it scans, copying the pages of the parent's objects (the dataset, the model…) into
    the worker; ``gc.freeze()`` takes them out of every later collection, so they stay shared. No-op without workers.
    """
    if num_workers > 0:
        gc.collect()
        gc.freeze()


def build_train_loader(
    dataset: Dataset,
    *,
    total_batch_size: int,
    rank: int,
    world_size: int,
    seed: int,
    start_iter: int = 0,
    num_workers: int = 0,
    collate: Callable[[list], Batch],
    pin_memory: bool | None = None,
) -> Iterator[Batch]:
    """An endless iterator of this rank's training batches starting at global iteration ``start_iter``.

    The dataset is indexed with ``(index, aug_seed)`` keys from :class:`TrainBatchSampler`. The workers start here,
    after :func:`freeze_before_fork`. ``pin_memory``: hand out batches in pinned memory (:meth:`Batch.pin_memory`),
    for copies to a CUDA device that the host does not wait for; ``None``: whenever CUDA is available.
    """
    sampler = TrainBatchSampler(
        len(dataset),
        total_batch_size=total_batch_size,
        rank=rank,
        world_size=world_size,
        seed=seed,
        start_iter=start_iter,
    )
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, **_loader_kwargs(num_workers, pin_memory))
    freeze_before_fork(num_workers)
    return iter(loader)


class _NonEmpty:
    """Iterable over a loader's batches that leaves out empty ones (every image skipped)."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Batch]:
        return (batch for batch in self.loader if len(batch) > 0)

    def __len__(self) -> int:
        return len(self.loader)


def build_test_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    rank: int,
    world_size: int,
    num_workers: int = 0,
    collate: Callable[[list], Batch],
) -> Iterable[Batch]:
    """Re-iterable batches of this rank's contiguous shard, in index order, each index exactly once over ranks.

    Batches whose every image was skipped (``on_bad_image="skip"``) are left out. The parent's objects are frozen
    (:func:`freeze_before_fork`) before the workers start, at the first iteration.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sampler = InferenceSampler(len(dataset), rank=rank, world_size=world_size)
    batches = BatchSampler(sampler, batch_size, drop_last=False)
    freeze_before_fork(num_workers)
    return _NonEmpty(DataLoader(dataset, batch_sampler=batches, collate_fn=collate, **_loader_kwargs(num_workers)))
