"""Process launching and devices; the collectives are :mod:`msad.comm`'s (the engine reaches them through here).

``launch`` gives ``--gpus N`` its meaning: under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) the
environment decides and ``fn`` runs in this process; otherwise one rank runs inline without a process group and
N > 1 ranks are spawned locally on ``127.0.0.1``. Backends: gloo on the CPU, NCCL on CUDA (device ``cuda:LOCAL_RANK``).
Every helper works without a process group (a world of one).
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from msad.comm import (
    all_gather_object,
    all_reduce_mean,
    barrier,
    broadcast_object,
    get_local_rank,
    get_rank,
    get_world_size,
    is_main_process,
)
from msad.errors import ResourceError, UsageError

__all__ = [
    "LaunchError",
    "launch",
    "resolve_device",
    "sync_batchnorm",
]

T = TypeVar("T")
_TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class LaunchError(RuntimeError):
    """A spawned rank failed in a way that left no Python exception to re-raise (killed, crashed, unpicklable)."""


def launch(fn: Callable[..., T], *, num_procs: int = 1, args: tuple = (), device: str = "auto") -> T | None:
    """Run ``fn(*args)`` on ``num_procs`` local ranks (or on the ranks ``torchrun`` set up) and return rank 0's result.

    Args:
        fn: a module-level (picklable) function; it runs once per rank with a process group initialised when
            the world has more than one rank.
        num_procs: ranks to spawn on this machine (``--gpus N``); ignored under ``torchrun``.
        args: positional arguments for ``fn`` (picklable when spawning).
        device: ``"cpu"`` (gloo), ``"cuda"`` (NCCL, one GPU per rank) or ``"auto"``.

    Returns:
        ``fn``'s return value on rank 0 (``None`` on other torchrun ranks).

    Raises:
        The exception a spawned rank raised (same type, with a note naming the rank and its traceback), or
        :class:`LaunchError` when a rank died without one.
    """
    if all(key in os.environ for key in _TORCHRUN_KEYS):
        world_size = int(os.environ["WORLD_SIZE"])
        with _process_group(int(os.environ["RANK"]), world_size, int(os.environ["LOCAL_RANK"]), device, None):
            result = fn(*args)
        return result if int(os.environ["RANK"]) == 0 else None
    if num_procs < 1:
        raise ValueError(f"num_procs must be >= 1, got {num_procs}")
    if num_procs == 1:
        return fn(*args)
    device_type = _device_type(device)
    if device_type == "cuda" and torch.cuda.device_count() < num_procs:
        raise UsageError(f"--gpus {num_procs}: asked for {num_procs} CUDA ranks but this machine has {torch.cuda.device_count()} GPUs")
    if device_type == "cpu" and num_procs > (os.cpu_count() or 1):
        raise UsageError(
            f"--gpus {num_procs}: asked for {num_procs} CPU ranks but this machine has {os.cpu_count() or 1} CPU cores; "
            "use at most that many"
        )
    port = _free_port()
    # torch logs "Terminating process … via signal SIGTERM" for the peers of a failed rank; the error says it all
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="msad-launch-") as tmp:
        try:
            mp.spawn(_spawned, args=(fn, args, num_procs, port, device_type, tmp), nprocs=num_procs, join=True)
        except mp.ProcessRaisedException as err:
            raise _child_exception(Path(tmp), err.error_index, num_procs, str(err)) from None
        except mp.ProcessExitedException as err:
            if getattr(err, "signal_name", None) == "SIGKILL":  # what the kernel's out-of-memory killer sends
                raise ResourceError(
                    f"rank {err.error_index} of {num_procs} (pid {err.error_pid}) was killed (SIGKILL), usually because "
                    "the machine ran out of memory; lower solver.batch_size, data.num_workers or --gpus"
                ) from None
            raise LaunchError(
                f"rank {err.error_index} of {num_procs} (pid {err.error_pid}) died: exit code {err.exit_code}"
            ) from None
        result_file = Path(tmp) / "result.pkl"
        return pickle.loads(result_file.read_bytes()) if result_file.exists() else None


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


class _process_group:
    """Context manager: set up this rank's process group (when the world has > 1 rank) and tear it down."""

    def __init__(self, rank: int, world_size: int, local_rank: int, device: str, port: int | None) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device_type = _device_type(device)
        self.port = port

    def __enter__(self) -> None:
        if self.device_type == "cuda":
            torch.cuda.set_device(self.local_rank)
        if self.world_size == 1 or dist.is_initialized():
            return
        backend = "nccl" if self.device_type == "cuda" else "gloo"
        init = "env://" if self.port is None else f"tcp://127.0.0.1:{self.port}"
        dist.init_process_group(backend, init_method=init, rank=self.rank, world_size=self.world_size)

    def __exit__(self, *exc: object) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def _spawned(local_rank: int, fn: Callable, args: tuple, world_size: int, port: int, device: str, tmp: str) -> None:
    """Body of one spawned rank: environment, process group, ``fn``; results and errors go to ``tmp``."""
    os.environ.update(
        RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    error_file = Path(tmp) / f"error-{local_rank}.pkl"
    try:
        with _process_group(local_rank, world_size, local_rank, device, port):
            try:
                result = fn(*args)
            except BaseException as exc:
                # record the error before the process group is torn down: peers that then fail on the closed
                # connection write their (secondary) errors later, and the launcher reports the first one
                _write_pickle(error_file, (exc, traceback.format_exc()))
                raise
        if local_rank == 0:
            _write_pickle(Path(tmp) / "result.pkl", result)
    except BaseException as exc:
        if not error_file.exists():
            _write_pickle(error_file, (exc, traceback.format_exc()))
        raise


def _write_pickle(path: Path, obj: Any) -> None:
    """Pickle ``obj`` to ``path``; objects that cannot round-trip are replaced by their ``repr``."""
    try:
        data = pickle.dumps(obj)
        pickle.loads(data)
    except Exception:  # noqa: BLE001 - anything unpicklable becomes text
        data = pickle.dumps(("unpicklable", _describe(obj)))
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)  # the launcher never reads half a file


def _child_exception(tmp: Path, rank: int, world_size: int, message: str) -> BaseException:
    """The exception that stopped the ranks, annotated with where it came from.

    ``mp.spawn`` reports whichever failed rank it noticed first, which is often a rank that only saw its peer
    vanish ("connection closed by peer"). The first error file written is the root cause, so it wins.
    """
    errors = sorted(tmp.glob("error-*.pkl"), key=lambda f: (f.stat().st_mtime_ns, int(f.stem.split("-")[1])))
    if errors:
        rank = int(errors[0].stem.split("-")[1])
    error_file = tmp / f"error-{rank}.pkl"
    if error_file.exists():
        payload = pickle.loads(error_file.read_bytes())
        if isinstance(payload, tuple) and len(payload) == 2 and isinstance(payload[0], BaseException):
            exc, child_traceback = payload
            exc.add_note(f"raised on spawned rank {rank} of {world_size}; the rank's traceback:\n{child_traceback}")
            return exc
        if isinstance(payload, tuple) and len(payload) == 2 and payload[0] == "unpicklable":
            message = str(payload[1])
    lines = [line for line in message.strip().splitlines() if line.strip()]
    error = LaunchError(f"rank {rank} of {world_size} failed: {lines[-1].strip() if lines else 'no message'}")
    error.add_note(message)
    return error


def _describe(obj: Any) -> str:
    """An object that cannot be pickled as text: an ``(exception, traceback)`` pair as its traceback, one line last."""
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], BaseException):
        exc, child_traceback = obj
        text = " ".join(str(exc).split())
        return f"{child_traceback}\n{type(exc).__name__}: {text}" if text else f"{child_traceback}\n{type(exc).__name__}"
    return repr(obj)


def _device_type(device: str) -> str:
    """``"cpu"`` or ``"cuda"`` for a device choice."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
