"""Local ranks through torch's elastic agent (the engine ``torchrun`` runs on): restarts, and errors as JSON.

:func:`run_elastic` starts ``nproc`` ranks on this machine (one node, a c10d rendezvous on a free local port) and
lets the agent restart the whole group up to ``max_restarts`` times when a rank fails; a restarted group sees
``TORCHELASTIC_RESTART_COUNT`` > 0 and the trainer resumes its own run from the last checkpoint.

Each rank reports how it ended through a JSON record in a private temporary folder (type, message, exit code,
traceback; never a pickle), which the launcher turns back into the rank's exception. A failure that a restart
would only repeat (msad's own errors, Ctrl-C, out of memory, a full disk) is *final*: the records stop every later
attempt at once, so the launcher reports it without retrying. A preemption (:class:`msad.errors.Preempted`,
reached by every rank at the same step) ends the ranks cleanly, so the agent does not restart them.

The launching process holds for the whole run whatever must outlive the ranks' restarts (e.g. a lock on the run
directory: take it around :func:`msad.engine.launch`, not in a rank).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from msad.errors import MsadError, Preempted, ResourceError, Terminated

__all__ = ["run_elastic", "restart_count", "max_restarts", "SHUTDOWN_SECONDS"]

#: Seconds the agent waits, after forwarding a signal (SIGTERM, SIGUSR1…) to the ranks, for them to reach the next
#: step boundary and checkpoint, before it kills them.
SHUTDOWN_SECONDS = 120
#: The signals the agent catches and forwards to the ranks (torch's defaults, plus SIGUSR1 for preemption).
_FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1")
_STOPPED = "msad:stopped"  # a rank's return value when the run ended for a reason the records tell
_RESOURCE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS)


def restart_count() -> int:
    """How many times the elastic agent (ours or ``torchrun``'s) restarted this rank's group (0: first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def max_restarts() -> int:
    """The agent's restart budget (``--max-restarts``), 0 outside an elastic launch."""
    return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)


def run_elastic(fn: Callable[..., Any], args: tuple, *, nproc: int, device: str, max_restarts: int,
                timeout_minutes: float) -> Any:
    """Run ``fn(*args)`` on ``nproc`` local ranks under the elastic agent; rank 0's return value.

    Raises:
        The failing rank's exception (rebuilt from its record, with a note holding its traceback); a
        :class:`ResourceError` for a rank killed by SIGKILL (the out-of-memory killer) once no restart is left;
        :class:`~msad.errors.Preempted` when the ranks stopped for SIGTERM/SIGUSR1; :class:`Terminated` or
        ``KeyboardInterrupt`` when the launcher itself got a signal before the ranks could checkpoint.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    with tempfile.TemporaryDirectory(prefix="msad-launch-") as tmp, _quiet_agent():
        config = LaunchConfig(
            min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"msad-{uuid.uuid4().hex[:12]}",
            rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", local_addr="127.0.0.1", max_restarts=max_restarts,
            start_method="spawn", logs_specs=DefaultLogsSpecs(log_dir=str(Path(tmp) / "agent")),
            signals_to_handle=",".join(_FORWARDED), shutdown_timeout=SHUTDOWN_SECONDS,
        )
        try:
            results = elastic_launch(config, _worker)(fn, args, device, tmp, timeout_minutes)
        except ChildFailedError as err:
            raise _failure(Path(tmp), err.failures, nproc) from None
        except SignalException as err:
            final = _root_record(Path(tmp))
            if final is not None and final.get("final"):
                raise _rebuild(final, nproc) from None
            if err.sigval == signal.SIGINT:
                raise KeyboardInterrupt from None
            raise Terminated(int(err.sigval)) from None
        if any(value == _STOPPED for value in results.values()):
            record = _root_record(Path(tmp))
            if record is not None:
                raise _rebuild(record, nproc)
        return results.get(0)


def _worker(fn: Callable[..., Any], args: tuple, device: str, tmp: str, timeout_minutes: float) -> Any:
    """One rank under the agent: process group, ``fn``; how it ended goes to a JSON record in ``tmp``."""
    from msad.engine.distributed import process_group

    folder = Path(tmp)
    if any(record.get("final") for record in _records(folder)):
        return _STOPPED  # an earlier attempt ended for good: end this one at once, without an error
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank, local_world = int(os.environ["LOCAL_RANK"]), int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    try:
        with process_group(rank, world_size, local_rank, device, timeout_minutes=timeout_minutes):
            result = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - every end is recorded; the agent only sees the exit status
        _write_record(folder, rank, exc)
        if isinstance(exc, Preempted):
            return _STOPPED  # every rank stopped at the same step after the checkpoint: nothing to restart
        raise SystemExit(1) from None  # no traceback on the console; the launcher prints the record's one line
    return result if rank == 0 else None


def _final(exc: BaseException) -> bool:
    """Whether a restart would only repeat ``exc`` (so the run ends at once)."""
    if isinstance(exc, MsadError | KeyboardInterrupt | SystemExit | MemoryError | torch.OutOfMemoryError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _RESOURCE_ERRNOS
    if isinstance(exc, RuntimeError):  # communication and device failures: what restarts are for
        return "out of memory" in str(exc)
    return True  # a Python error in msad or a plugin: the same code would raise it again


def _write_record(folder: Path, rank: int, exc: BaseException) -> None:
    """``error-{attempt}-{rank}.json``: what ended this rank, written atomically."""
    args = list(exc.args)
    try:
        json.dumps(args)
    except (TypeError, ValueError):
        args = None
    exit_code = getattr(exc, "exit_code", None)
    record = {
        "rank": rank, "attempt": restart_count(), "time_ns": time.time_ns(), "final": _final(exc),
        "module": type(exc).__module__, "type": type(exc).__qualname__, "args": args, "message": str(exc),
        "exit_code": exit_code if isinstance(exit_code, int) else None,
        "filename": exc.filename if isinstance(exc, OSError) and isinstance(exc.filename, str) else None,
        "traceback": traceback.format_exc(),
    }
    partial = folder / f".error-{record['attempt']}-{rank}.json.part"
    partial.write_text(json.dumps(record), encoding="utf-8")
    os.replace(partial, folder / f"error-{record['attempt']}-{rank}.json")  # never half a record


def _records(folder: Path) -> list[dict[str, Any]]:
    """Every record written so far, oldest first."""
    records = []
    for path in folder.glob("error-*.json"):
        with contextlib.suppress(OSError, ValueError):
            records.append(json.loads(path.read_text(encoding="utf-8")))
    return sorted(records, key=lambda r: r.get("time_ns", 0))


def _root_record(folder: Path) -> dict[str, Any] | None:
    """The record that explains the last attempt: its first final one, else its first one."""
    records = _records(folder)
    if not records:
        return None
    last = max(r.get("attempt", 0) for r in records)
    finals = [r for r in records if r.get("final")]
    if finals:
        return finals[0]
    return [r for r in records if r.get("attempt", 0) == last][0]


def _failure(folder: Path, failures: dict[int, Any], nproc: int) -> BaseException:
    """The exception for a group that failed with no restart left (``failures``: the agent's, by rank)."""
    record = _root_record(folder)
    killed = {rank: f for rank, f in failures.items() if getattr(f, "exitcode", 0) < 0}
    if record is not None and (record.get("final") or not killed):
        return _rebuild(record, nproc)
    rank, failure = min(killed.items()) if killed else min(failures.items())
    if failure.exitcode == -signal.SIGKILL:  # what the kernel's out-of-memory killer sends
        return ResourceError(
            f"rank {rank} of {nproc} (pid {failure.pid}) was killed (SIGKILL), usually because the machine ran out "
            "of memory; lower solver.batch_size, data.num_workers or --gpus"
        )
    how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    from msad.engine.distributed import LaunchError

    return LaunchError(f"rank {rank} of {nproc} (pid {failure.pid}) died: {how}")


def _rebuild(record: dict[str, Any], nproc: int) -> BaseException:
    """A rank's exception from its record: same type and message when that type can be rebuilt, else a
    :class:`LaunchError` whose one line quotes it; a note keeps the rank's traceback for ``--debug``."""
    from msad.engine.distributed import LaunchError

    cls = _exception_class(record)
    exc = _instantiate(cls, record) if cls is not None else None
    if exc is None:
        lines = [line for line in str(record.get("message", "")).splitlines() if line.strip()]
        exc = LaunchError(f"rank {record.get('rank')} of {nproc} failed: {record.get('type')}"
                          + (f": {' '.join(lines[-1].split())}" if lines else ""))
    if isinstance(record.get("exit_code"), int) and isinstance(exc, MsadError | Terminated):
        exc.exit_code = record["exit_code"]
    exc.add_note(f"raised on rank {record.get('rank')} of {nproc}; the rank's traceback:\n{record.get('traceback', '')}")
    return exc


def _exception_class(record: dict[str, Any]) -> type[BaseException] | None:
    """The exception class a record names, looked up among the modules already imported (never importing one)."""
    target: Any = sys.modules.get(str(record.get("module")))
    for part in str(record.get("type", "")).split("."):
        target = getattr(target, part, None)
    return target if isinstance(target, type) and issubclass(target, BaseException) else None


def _instantiate(cls: type[BaseException], record: dict[str, Any]) -> BaseException | None:
    """``cls`` rebuilt from the record's arguments when that gives the same message; msad errors keep their type
    with the message alone; ``None`` otherwise."""
    args, message = record.get("args"), record.get("message", "")
    if isinstance(args, list):
        if issubclass(cls, OSError) and record.get("filename") and len(args) == 2:
            args = [*args, record["filename"]]
        with contextlib.suppress(Exception):
            exc = cls(*args)
            if str(exc) == message:
                return exc
    if issubclass(cls, MsadError):
        exc = cls.__new__(cls)
        Exception.__init__(exc, message)
        return exc
    return None


@contextlib.contextmanager
def _quiet_agent() -> Iterator[None]:
    """Silence the agent's log lines (msad reports in its own lines) and restore the launcher's signal handlers,
    which the agent replaces with its own, afterwards."""
    disabled = logging.root.manager.disable
    handlers = {}
    for name in _FORWARDED:
        with contextlib.suppress(ValueError, AttributeError):
            handlers[getattr(signal, name)] = signal.getsignal(getattr(signal, name))
    logging.disable(logging.CRITICAL)  # this process only: the ranks' own logging is untouched
    try:
        yield
    finally:
        logging.disable(disabled)
        for sig, handler in handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
