"""Process launching and devices; the collectives are :mod:`msad.comm`'s.

``launch`` gives ``--gpus N`` its meaning: under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) the
environment decides and ``fn`` runs in this process; otherwise one rank runs inline without a process group, and
N > 1 ranks (or any number with ``max_restarts``) run on this machine under torch's elastic agent
(:mod:`msad.engine.elastic`), which restarts the group when a rank fails. Backends: gloo on the CPU, NCCL on CUDA
(device ``cuda:LOCAL_RANK``, asynchronous error handling on). Every helper works without a process group.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from msad.comm import get_local_rank
from msad.engine.elastic import restart_count
from msad.errors import UsageError

__all__ = [
    "LaunchError",
    "launch",
    "launched_rank",
    "process_group",
    "resolve_device",
    "sync_batchnorm",
]

T = TypeVar("T")
_TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
#: The process group's timeout when none is given (``run.dist_timeout_minutes``' default).
DEFAULT_TIMEOUT_MINUTES = 30.0


class LaunchError(RuntimeError):
    """A rank failed in a way that left no exception to re-raise as it was (killed, crashed, unknown type)."""


def launch(fn: Callable[..., T], *, num_procs: int = 1, args: tuple = (), device: str = "auto",
           max_restarts: int = 0, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> T | None:
    """Run ``fn(*args)`` on ``num_procs`` local ranks (or on the ranks ``torchrun`` set up) and return rank 0's result.

    Args:
        fn: a module-level (picklable) function; it runs once per rank with a process group initialised when
            the world has more than one rank.
        num_procs: ranks to start on this machine (``--gpus N``); ignored under ``torchrun``.
        args: positional arguments for ``fn`` (picklable when ranks are started).
        device: ``"cpu"`` (gloo), ``"cuda"`` (NCCL, one GPU per rank) or ``"auto"``.
        max_restarts: how many times the elastic agent may restart the group after a rank failed (``--max-restarts``;
            ignored under ``torchrun``, whose own ``--max-restarts`` decides).
        timeout_minutes: the process group's timeout (``run.dist_timeout_minutes``).

    Returns:
        ``fn``'s return value on rank 0 (``None`` on other torchrun ranks).

    Raises:
        The exception a rank raised (same type, with a note naming the rank and its traceback), or
        :class:`LaunchError` / :class:`~msad.errors.ResourceError` when a rank died without one.
    """
    if all(key in os.environ for key in _TORCHRUN_KEYS):
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        with process_group(rank, world_size, int(os.environ["LOCAL_RANK"]), device, timeout_minutes=timeout_minutes):
            result = fn(*args)
        return result if rank == 0 else None
    if num_procs < 1:
        raise ValueError(f"num_procs must be >= 1, got {num_procs}")
    if max_restarts < 0:
        raise UsageError(f"--max-restarts must be >= 0, got {max_restarts}")
    if num_procs == 1 and max_restarts == 0:
        return fn(*args)
    device_type = _device_type(device)
    if device_type == "cuda" and torch.cuda.device_count() < num_procs:
        raise UsageError(f"--gpus {num_procs}: asked for {num_procs} CUDA ranks but this machine has {torch.cuda.device_count()} GPUs")
    if device_type == "cpu" and num_procs > (os.cpu_count() or 1):
        raise UsageError(
            f"--gpus {num_procs}: asked for {num_procs} CPU ranks but this machine has {os.cpu_count() or 1} CPU cores; "
            "use at most that many"
        )
    from msad.engine.elastic import run_elastic

    return run_elastic(fn, args, nproc=num_procs, device=device_type, max_restarts=max_restarts,
                       timeout_minutes=timeout_minutes)


def launched_rank() -> int:
    """This process's rank as its launcher set it (``RANK``; 0 for the process that launched local ranks).

    Unlike :func:`msad.comm.get_rank` it holds after the process group is gone, e.g. for a torchrun rank's final
    messages.
    """
    return int(os.environ.get("RANK", "0") or 0)


def sync_batchnorm(
    model: torch.nn.Module, *, setting: bool | str, world_size: int, device_type: str
) -> tuple[torch.nn.Module, str | None]:
    """``model`` with SyncBatchNorm when ``setting`` asks for it, and a line saying what was done (or ``None``).

    Converts when ``setting`` is ``True`` or ``"auto"``, more than one rank trains, the ranks are CUDA devices and
    ``model`` has BatchNorm layers. Only ``model`` is converted: frozen modules that are not part of it (the
    student's teacher) keep per-GPU BatchNorm, whatever mode they run in.
    """
    if setting not in (True, False, "auto"):
        raise ValueError(f"sync_bn must be true, false or 'auto', got {setting!r}")
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if setting is False or world_size <= 1 or not has_bn:
        return model, None
    if device_type != "cuda":
        return model, ("sync_bn ignored: SyncBatchNorm needs CUDA ranks" if setting is True else None)
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return converted, f"BatchNorm synchronised across {world_size} ranks (SyncBatchNorm)"


def resolve_device(choice: str = "auto") -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` for CUDA, else the CPU.

    ``"auto"`` follows the process group's backend when one is initialised (NCCL → CUDA, gloo → CPU), else
    uses CUDA when available.
    """
    if choice not in ("auto", "cpu", "cuda"):
        raise UsageError(f"device must be auto, cpu or cuda, got {choice!r}")
    if choice == "auto":
        if dist.is_available() and dist.is_initialized():
            choice = "cuda" if dist.get_backend() == "nccl" else "cpu"
        else:
            choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("device 'cuda' was asked for but CUDA is not available on this machine; use 'cpu' or 'auto'")
        return torch.device("cuda", get_local_rank())
    return torch.device("cpu")


class process_group:
    """Context manager: set up this rank's process group (when the world has > 1 rank) and tear it down.

    ``timeout_minutes`` bounds every collective: a rank that waits longer for a hung or lost peer fails (and the
    elastic agent may restart the group). On CUDA, NCCL's asynchronous error handling is turned on (unless the
    environment already chose), so such a failure ends the process instead of leaving it hanging.
    """

    def __init__(self, rank: int, world_size: int, local_rank: int, device: str, *,
                 timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device_type = _device_type(device)
        self.timeout = timedelta(minutes=timeout_minutes)

    def __enter__(self) -> None:
        if self.device_type == "cuda":
            torch.cuda.set_device(self.local_rank)
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        if self.world_size == 1 or dist.is_initialized():
            return
        backend = "nccl" if self.device_type == "cuda" else "gloo"
        store = _attempt_store(self.world_size, self.timeout)
        dist.init_process_group(backend, init_method=None if store else "env://", store=store, rank=self.rank,
                                world_size=self.world_size, timeout=self.timeout)

    def __exit__(self, *exc: object) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def _attempt_store(world_size: int, timeout: timedelta) -> dist.Store | None:
    """Under an elastic agent's shared store, a view of it private to this attempt; ``None`` elsewhere (env://).

    The agent keeps one store for the whole job and torch no longer prefixes its keys per restart, so the ranks of
    a restarted group could read the addresses their dead predecessors published and fail to connect. Prefixing
    the keys with the restart count keeps each attempt's apart.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False,
                           timeout=timeout)
    return dist.PrefixStore(f"msad/attempt_{restart_count()}", client)


def _device_type(device: str) -> str:
    """``"cpu"`` or ``"cuda"`` for a device choice."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return device
