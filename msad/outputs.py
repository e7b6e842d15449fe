"""The one rule for every file msad writes, checked before a command does any work.

Every command that writes (``eval --json/--results``, ``compare --json``, ``flops --json``, ``export``,
``predict``, ``data synth``, ``convert``, the training run directories) names its outputs and its inputs to
:func:`check_outputs` first. On resolved real paths (symbolic links followed), an output must

- not be an input of the same command (weights, recipe, annotations, images): writing it would destroy it;
- not be another output of the same command (one would replace the other);
- stay inside its output folder when it has one (``OUT/d1`` linking elsewhere would write outside ``OUT``);
- be a file name that can be written (not a directory, no file where a folder above it should be, writable).

The writes themselves are atomic (:func:`msad.serialization.atomic_write`): a temporary file beside the
destination, renamed over it, removed on any failure. This module imports nothing of msad but :mod:`msad.errors`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from msad.errors import UsageError

__all__ = ["PathLike", "check_outputs", "same_file"]

#: A path as the commands take it.
PathLike = str | os.PathLike


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file: the same real path, or (both existing) the same inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


class _Files:
    """Named files, looked up by real path and (for existing files) by inode."""

    def __init__(self) -> None:
        self.by_path: dict[str, tuple[str, Path]] = {}
        self.by_inode: dict[tuple[int, int], tuple[str, Path]] = {}

    def add(self, what: str, path: Path, real: str) -> None:
        self.by_path.setdefault(real, (what, path))
        inode = _inode(path)
        if inode is not None:
            self.by_inode.setdefault(inode, (what, path))

    def find(self, path: Path, real: str) -> tuple[str, Path] | None:
        found = self.by_path.get(real)
        if found is None and self.by_inode:
            inode = _inode(path)
            found = None if inode is None else self.by_inode.get(inode)
        return found


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_outputs(
    outputs: Iterable[tuple[str, PathLike | None]],
    *,
    inputs: Iterable[tuple[str, PathLike | None]] = (),
    within: PathLike | None = None,
    fix: str | None = None,
) -> list[Path]:
    """Refuse outputs that would destroy an input, collide, escape their folder or cannot be written.

    Args:
        outputs: ``(what, path)`` of each file the command will write, ``what`` as the user knows it
            (``"--json"``, ``"export output"``); ``None`` paths are skipped.
        inputs: ``(what, path)`` of each file the command reads (``"--weights"``, ``"the recipe"``…);
            ``None`` paths are skipped.
        within: the output folder the outputs must stay in after every link is followed (``--output``).
        fix: what the message tells the user to do (default: ``choose another {what}``).

    Returns:
        The outputs' resolved paths, in order (``None`` ones left out).

    Raises:
        UsageError: one line naming the output, what it collides with and how to fix it.
    """
    read = _Files()
    for what, path in inputs:
        if path is not None:
            read.add(what, Path(path), os.path.realpath(path))
    root = None if within is None else os.path.realpath(within)
    written = _Files()
    resolved: list[Path] = []
    for what, path in outputs:
        if path is None:
            continue
        path, real = Path(path), os.path.realpath(path)
        todo = fix or f"choose another {what}"
        if root is not None and os.path.commonpath([root, real]) != root:
            raise UsageError(
                f"{what} {path} resolves to {real}, outside the output folder {within} (through a symbolic link); "
                f"remove the link or {fix or 'choose another output folder'}"
            )
        clash = read.find(path, real)
        if clash is not None:
            raise UsageError(f"{what} {path} would overwrite the input {clash[0]} {clash[1]}; {todo}")
        clash = written.find(path, real)
        if clash is not None:
            raise UsageError(f"{what} {path} and {clash[0]} {clash[1]} are the same file; give two different files")
        _check_writable(what, path)
        written.add(what, path, real)
        resolved.append(Path(real))
    return resolved


def _check_writable(what: str, path: Path) -> None:
    """Refuse a file name that cannot be written: a directory, under a file, or in a read-only folder."""
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory; give a file name (e.g. {path / 'out.json'})")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{what} {path}: not writable")
