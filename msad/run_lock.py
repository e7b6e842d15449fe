"""One run per output directory: an operating-system lock that the launching process holds for the whole run.

The lock is ``fcntl.flock`` (exclusive, non-blocking) on ``.msad-run.lock`` in the run directory. The kernel
releases it when the holder's last descriptor closes, so a crashed or killed run (``SIGKILL`` included) leaves
nothing stale behind: the file may stay, the lock does not. The process that launches the ranks takes it before
any rank starts (under ``torchrun``, where there is no msad launcher, global rank 0 does), so ranks restarted by
an elastic agent stay under the one lock.

The file is removed on release while the lock is still held; a process that locked a file which another one
removed meanwhile finds the path's inode changed and retries, so two runs can never both hold the directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from msad.errors import RunStateError

try:
    import fcntl
except ImportError:  # not POSIX: no lock (documented)
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunInUseError", "run_lock", "hold_run_directory"]

#: The lock file in a run directory.
LOCK_FILE = ".msad-run.lock"
_TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class RunInUseError(RunStateError):
    """Another msad run holds the output directory."""


@contextlib.contextmanager
def run_lock(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold ``directory`` (created when missing) for one run; yields the lock file's path.

    On exit the lock file is removed, and the directory too when this call created it and it is empty (a run that
    failed before writing anything leaves nothing behind).

    Raises:
        RunInUseError: another process holds the directory (the message names its pid).
        RunStateError: ``directory`` is a file.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise RunStateError(f"output {directory} is a file, not a directory; choose another --output")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = None
    try:
        fd = _acquire(path)
        yield path
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                if _same_file(fd, path):
                    path.unlink()
            os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty


def hold_run_directory(directory: str | os.PathLike) -> contextlib.AbstractContextManager:
    """:func:`run_lock` in the process that launches a run: here, unless this is a ``torchrun`` rank other than
    global rank 0 (rank 0 holds it for all of them)."""
    if all(key in os.environ for key in _TORCHRUN_KEYS) and os.environ["RANK"] != "0":
        return contextlib.nullcontext(Path(directory) / LOCK_FILE)
    return run_lock(directory)


def _acquire(path: Path) -> int | None:
    """Open and lock ``path``; the open descriptor (``None`` where the platform has no ``flock``)."""
    if fcntl is None:
        return None
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunInUseError(
                f"{path.parent} is in use by another msad run{holder}; wait for it to end, or choose another --output"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):  # not a file that its last holder removed after we opened it
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
    raise RunInUseError(f"{path.parent}: could not take its run lock {path.name}; another run keeps replacing it")


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _holder(fd: int) -> str:
    """`` (pid N)`` from the lock file's text, or nothing."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""
