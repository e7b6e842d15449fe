"""Collectives that work with or without a process group (a world of one): rank, world size, gather, broadcast.

Neutral helpers for the engine, the evaluation and anything else that runs on every rank; process launching
and devices are :mod:`msad.engine.distributed`'s.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "get_rank",
    "get_local_rank",
    "get_world_size",
    "is_main_process",
    "all_reduce_mean",
    "all_reduce_max",
    "broadcast_buffers",
    "all_gather_object",
    "broadcast_object",
    "barrier",
]


def get_rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``, 0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def get_world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Whether this is rank 0."""
    return get_rank() == 0


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over ranks (a new tensor; the input is left as it is)."""
    if get_world_size() == 1:
        return tensor.detach().clone()
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / get_world_size()


def all_reduce_max(tensor: Tensor) -> Tensor:
    """The element-wise maximum of ``tensor`` over ranks (a new tensor; the input is left as it is)."""
    out = tensor.detach().clone()
    if get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Overwrite every buffer of ``module`` (BatchNorm running statistics…) with rank ``src``'s, in place."""
    if get_world_size() == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=src)


def all_gather_object(obj: Any) -> list[Any]:
    """A list of every rank's ``obj`` (picklable), in rank order."""
    if get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if get_world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def barrier() -> None:
    """Wait for every rank (no-op in a world of one)."""
    if get_world_size() > 1:
        dist.barrier()
