"""User-facing exceptions: one-line messages with the process exit code the CLI should use."""

from __future__ import annotations

import errno

__all__ = [
    "MsadError",
    "RecipeError",
    "PluginError",
    "UsageError",
    "DataError",
    "RunStateError",
    "ResourceError",
    "CheckpointError",
    "Interrupted",
    "Preempted",
    "Terminated",
    "MissingDependencyError",
    "RESOURCE_ERRNOS",
    "resource_error",
]


class MsadError(Exception):
    """Base of every error msad reports to a user as a single line (no traceback).

    Attributes:
        exit_code: process exit status the CLI uses for this error.
    """

    exit_code: int = 1


class RecipeError(MsadError):
    """A recipe file, a ``--set`` override or a plugin option is invalid."""

    exit_code = 3


class PluginError(MsadError):
    """A plugin is unknown, disabled or failed to load."""

    exit_code = 1


class UsageError(MsadError):
    """The command line itself is wrong (bad arguments or combination of options)."""

    exit_code = 2


class DataError(MsadError):
    """A dataset, its annotations or one of its images cannot be used as it is."""

    exit_code = 1


class RunStateError(MsadError):
    """An output directory cannot be used as asked (it holds a run, foreign files, or a different recipe)."""

    exit_code = 1


class ResourceError(MsadError):
    """The machine ran out of something (disk space, memory) or the training diverged: the user's situation, not a bug."""

    exit_code = 1


class CheckpointError(MsadError):
    """A weights or training-state file is missing, unreadable, or not what msad expects."""

    exit_code = 1


class Interrupted(MsadError):
    """The user stopped the command (Ctrl-C); the message says where the last checkpoint is."""

    exit_code = 130


class Preempted(Interrupted):
    """A signal (SIGTERM, SIGUSR1: a scheduler's preemption notice) stopped training at a step boundary, after
    every rank agreed and a checkpoint was written; resume with ``--resume``.

    The exit status is 128 + the signal number (143 for SIGTERM, 138 for SIGUSR1), as a shell reports a process
    that the signal ended.
    """

    def __init__(self, message: str, signum: int = 15) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class Terminated(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM/SIGUSR1 handler: unwinds the command like Ctrl-C, carrying the signal.

    :func:`msad.api.run_errors.user_situations` turns it into an :class:`Interrupted` line naming the last
    checkpoint, with exit status 128 + the signal number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


class MissingDependencyError(MsadError):
    """A feature the user asked for needs an optional package that is not installed (the message names the extra)."""

    exit_code = 1


#: ``errno`` of an ``OSError`` that means the machine ran out of something → (what happened, what to do).
RESOURCE_ERRNOS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free disk space"),
    errno.EDQUOT: ("the disk quota is exceeded", "free disk space or raise the quota"),
    errno.EMFILE: ("too many open files", "raise the limit (`ulimit -n`) or lower data.num_workers"),
    errno.ENFILE: ("too many open files on this machine", "close other programs or lower data.num_workers"),
    errno.ENOMEM: ("the machine is out of memory", "close other programs or lower the batch size"),
}


def resource_error(err: BaseException, what: str, *, then: str = "") -> ResourceError | None:
    """``err`` as the documented :class:`ResourceError` when it is an ``OSError`` of :data:`RESOURCE_ERRNOS`, else ``None``.

    Args:
        err: the exception.
        what: what stopped, for the message (``"training"``, ``"export"``…; ``""``: the message says what ran out).
        then: appended to the message (e.g. ``"; the last checkpoint is …"``).
    """
    if not isinstance(err, OSError) or err.errno not in RESOURCE_ERRNOS:
        return None
    happened, fix = RESOURCE_ERRNOS[err.errno]
    place = f" ({err.filename})" if err.filename else ""
    return ResourceError(f"{what + ' stopped: ' if what else ''}{happened}{place}; {fix}{then}")
