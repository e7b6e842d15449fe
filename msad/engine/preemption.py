"""Preemption and time-based checkpoints: every rank stops (or checkpoints) at the same step boundary.

Schedulers send SIGTERM (SLURM, Kubernetes, ``docker stop``) or, when asked, SIGUSR1 some time before they kill
a job. :class:`StopSignals` only records the signal (a handler must not touch the training state); the trainer
asks :func:`agree` at its flush boundaries — every ``run.log_period`` iterations and before any checkpoint or
evaluation, where the loss flush already waits for the device — and every rank gets the same answer at the same
iteration from one small all-reduce (max). The ranks then write one checkpoint and stop with
:class:`msad.errors.Preempted`, whose exit status is 128 + the signal (:data:`EXIT_SIGTERM` = 143,
:data:`EXIT_SIGUSR1` = 138).

Trade-off: agreeing every step would add a collective and a host synchronisation to each step, which the step is
kept free of; agreeing at the flush costs nothing extra per step, and a signal is acted on at most
``run.log_period`` iterations after it arrives (plus the checkpoint's own time). The scheduler's grace period
(SLURM ``--signal=USR1@120``, ``docker stop -t``, Kubernetes ``terminationGracePeriodSeconds``) must cover that.

The same all-reduce carries the time-based checkpoint (``run.checkpoint_minutes``): rank 0's clock decides and
the maximum over the ranks makes it every rank's decision.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType, TracebackType

import torch

from msad.comm import all_reduce_max, get_world_size

__all__ = ["PREEMPTION_SIGNALS", "EXIT_SIGTERM", "EXIT_SIGUSR1", "StopSignals", "CheckpointClock", "agree", "signal_name"]

#: The signals that stop training at the next step boundary, after a checkpoint.
PREEMPTION_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)
#: Exit status of a run stopped by SIGTERM (128 + 15), after its checkpoint.
EXIT_SIGTERM = 128 + signal.SIGTERM
#: Exit status of a run stopped by SIGUSR1 (128 + 10), after its checkpoint.
EXIT_SIGUSR1 = 128 + signal.SIGUSR1


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15…; ``"signal N"`` for a number this platform does not name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopSignals:
    """Context manager: while open, SIGTERM and SIGUSR1 only set :attr:`received` (the first signal's number).

    The previous handlers are restored on exit. Outside the main thread (where Python cannot install handlers)
    it does nothing and :attr:`received` stays 0.
    """

    def __init__(self) -> None:
        self.received = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in PREEMPTION_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum


class CheckpointClock:
    """Whether ``minutes`` have passed since the last checkpoint (``0`` minutes: never)."""

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60
        self.last = time.monotonic()

    def due(self) -> bool:
        """Whether a time-based checkpoint is due (on this rank's clock)."""
        return self.seconds > 0 and time.monotonic() - self.last >= self.seconds

    def reset(self) -> None:
        """A checkpoint was just written."""
        self.last = time.monotonic()


def agree(stop_signal: int, checkpoint_due: bool, *, device: torch.device) -> tuple[int, bool]:
    """Every rank's common answer: ``(signal to stop for or 0, whether to checkpoint now)``.

    One all-reduce (max) of two integers: a signal any rank received stops all of them; a checkpoint that is due
    on any rank (rank 0 passes its clock's answer, the others ``False``) is written by all. Every rank must call it
    at the same iterations. ``device`` is where the collective's tensor lives (CUDA for NCCL).
    """
    if get_world_size() == 1:
        return stop_signal, checkpoint_due
    flags = all_reduce_max(torch.tensor([stop_signal, int(checkpoint_due)], dtype=torch.int64, device=device))
    signum, due = flags.tolist()
    return int(signum), bool(due)
