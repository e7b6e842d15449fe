"""The user's situations, told as such: Ctrl-C or SIGTERM, a full disk and exhausted memory become one-line msad errors.

These are not msad bugs: the message says what happened and what to do, and (for training) where the last
checkpoint is. Used around every training and evaluation launch, so errors from spawned ranks are covered too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from msad.errors import Interrupted, ResourceError, resource_error

__all__ = ["user_situations", "last_checkpoint", "resume_hint"]


def last_checkpoint(output: Path) -> str:
    """Where a run in ``output`` can be resumed from, as a phrase, with a command that resumes it."""
    try:
        iteration = int(json.loads((output / "state.json").read_text(encoding="utf-8"))["iteration"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"no checkpoint was written in {output}, so there is nothing to resume"
    return f"the last checkpoint is {output / 'last.safetensors'} (iteration {iteration}); {resume_hint()}"


def resume_hint(argv: list[str] | None = None) -> str:
    """How to continue: the ``msad`` command line of this process with ``--resume`` in place of ``--force`` (the two
    contradict each other), or the same advice in words when this is not the ``msad`` command."""
    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or Path(argv[0]).name not in ("msad", "__main__.py"):
        return "continue with the same command and --resume (without --force)"
    args = [arg for arg in argv[1:] if arg != "--force"]
    return "continue with: msad " + shlex.join(args + ([] if "--resume" in args else ["--resume"]))


def _out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (CUDA or CPU)."""
    if isinstance(err, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@contextlib.contextmanager
def user_situations(what: str, *, output: Path | None = None) -> Iterator[None]:
    """Turn Ctrl-C, ENOSPC (and the other :data:`~msad.errors.RESOURCE_ERRNOS`) and out-of-memory inside the block
    into :class:`Interrupted` / :class:`ResourceError`.

    Args:
        what: the command, for the message (``"training"``, ``"evaluation"``).
        output: the run directory, to say where the last checkpoint is.
    """
    try:
        yield
    except KeyboardInterrupt as err:
        where = "" if output is None else "; " + last_checkpoint(output)
        signum = getattr(err, "signum", None)  # msad.errors.Terminated: SIGTERM or SIGUSR1
        if signum is None:
            raise Interrupted(f"{what} interrupted{where}") from None
        stopped = Interrupted(f"{what} stopped by {signal.Signals(signum).name}{where}")
        stopped.exit_code = 128 + signum
        raise stopped from None
    except OSError as err:
        place = f" ({err.filename})" if err.filename else ""
        where = "" if output is None else "; " + last_checkpoint(output)
        resource = resource_error(err, what, then=where)
        if resource is not None:
            raise resource from err
        if err.errno in (errno.EACCES, errno.EROFS) and err.filename:
            raise ResourceError(f"{what} stopped: cannot write{place}: {err.strerror}; choose a writable --output{where}") from err
        raise
    except (MemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
            raise
        where = "" if output is None else "; " + last_checkpoint(output)
        raise ResourceError(
            f"{what} ran out of memory; lower solver.batch_size (or --batch-size), data.train_sizes / data.max_size, "
            f"data.num_workers, or use fewer --gpus ranks per device{where}"
        ) from err
