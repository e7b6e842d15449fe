"""The train / test data loaders: DataLoaders over the exact-resume samplers of :mod:`msad.data.samplers`."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from msad.data.samplers import AspectRatioGroupedBatchSampler, InferenceSampler, TrainBatchSampler
from msad.structures import Batch

__all__ = ["build_train_loader", "build_test_loader", "freeze_before_fork"]


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
    landscape: Sequence[bool] | np.ndarray | None = None,
) -> Iterator[Batch]:
    """An endless iterator of this rank's training batches starting at global iteration ``start_iter``.

    The dataset is indexed with ``(index, aug_seed)`` keys from :class:`TrainBatchSampler`, or, given ``landscape``
    (``[n]`` booleans: image ``i`` is wider than high), from :class:`AspectRatioGroupedBatchSampler`. The workers
    start here, after :func:`freeze_before_fork`. ``pin_memory``: hand out batches in pinned memory
    (:meth:`Batch.pin_memory`), for copies to a CUDA device that the host does not wait for; ``None``: whenever CUDA
    is available.
    """
    stream = {"total_batch_size": total_batch_size, "rank": rank, "world_size": world_size, "seed": seed,
              "start_iter": start_iter}
    sampler = (
        TrainBatchSampler(len(dataset), **stream) if landscape is None
        else AspectRatioGroupedBatchSampler(len(dataset), landscape=landscape, **stream)
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
