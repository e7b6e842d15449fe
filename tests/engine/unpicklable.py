"""Rank functions that fail the hard ways: an unpicklable exception, a SIGKILL (importable by spawned ranks)."""

from __future__ import annotations


class OddError(Exception):
    """An exception whose constructor takes two arguments: unpickling it from ``args`` fails."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")


def fail_unpicklably(message: str) -> None:
    """Raise :class:`OddError` on rank 1."""
    import torch.distributed as dist

    if dist.get_rank() == 1:
        raise OddError("rank one", message)
    dist.barrier()


def kill_rank_one() -> None:
    """Rank 1 is killed by SIGKILL, as the out-of-memory killer does."""
    import os
    import signal

    import torch.distributed as dist

    if dist.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.barrier()
