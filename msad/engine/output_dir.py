"""The engine's output directory: fresh, resumable or refused, and the cleanup after a failed start.

This module owns the engine-level decision made from the run's own files (``training_state.json``,
``metrics.jsonl``, the weights) — whether a run resumes, starts fresh or is refused — and the cleanup of what a
fresh start wrote when it failed before training, and of the hidden temporaries an interrupted atomic write left
behind. The recipe-level checks made before any process starts live in :mod:`msad.api.run_directory`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from msad.engine.training_state import STATE_JSON, has_training_state
from msad.errors import RunStateError

__all__ = ["RunExistsError", "decide_output", "forget_failed_start", "remove_stale_temporaries", "restart_starts_over"]


class RunExistsError(RunStateError, FileExistsError):
    """The output directory already holds a run and neither resume nor force was asked for."""


_RUN_MARKERS = (STATE_JSON, "metrics.jsonl", "last.safetensors", "best.safetensors")
#: Hidden temporaries of an interrupted atomic write: ``.{name}.{pid}.{hex}.tmp``.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]+\.tmp")


def decide_output(
    out: Path, *, resume: bool, force: bool, say: Callable[[str], None]
) -> tuple[bool, str | None, bool]:
    """Decide whether the run in ``out`` resumes, starts fresh or is refused (called on rank 0).

    A fresh start creates ``out`` when missing; with ``force`` over an existing run, the old run's training state
    is deleted (it must never be resumed under another recipe) and its other files are left to be overwritten.

    Args:
        out: the output directory.
        resume: continue the run saved in ``out`` (a fresh start when it holds no run at all).
        force: start a fresh run even though ``out`` holds one.
        say: one-line messages (e.g. "nothing to resume").

    Returns:
        ``(resuming, error message or None, whether this call created out)``.
    """
    found = [name for name in _RUN_MARKERS if (out / name).exists()] + sorted(p.name for p in out.glob("model_*.safetensors"))
    if resume and has_training_state(out):
        return True, None, False
    if resume and found and not force:
        return False, f"cannot resume: {out} holds {', '.join(found)} but no training state ({STATE_JSON})", False
    if found and not force:
        return False, (
            f"{out} already holds a run ({', '.join(found[:4])}); pass resume (--resume) to continue it "
            "or force (--force) to start over in it"
        ), False
    if found and force:  # starting over: the old run's state must never be resumed under this recipe
        for stale in [out / STATE_JSON, *out.glob("state-*.safetensors")]:
            stale.unlink(missing_ok=True)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        say(f"nothing to resume in {out}; starting a fresh run")
    return False, None, created


def restart_starts_over(out: Path, recipe_json: str | None) -> bool:
    """Whether a restarted group should start its run over in ``out`` rather than resume it.

    True only when the failed attempt left nothing of value: no training state, no weights, and a ``recipe.json``
    that is absent or this run's own (``recipe_json``, byte for byte). Anything else is resumed, or refused by
    :func:`decide_output` and the recipe checks like any ``--resume``.
    """
    if has_training_state(out) or any(out.glob("*.safetensors")):
        return False
    saved = out / "recipe.json"
    try:
        return not saved.exists() or (recipe_json is not None and saved.read_text(encoding="utf-8") == recipe_json)
    except OSError:
        return False


def forget_failed_start(directory: Path, written: Iterable[str], *, created: bool) -> None:
    """Remove the files a fresh start wrote in ``directory`` before failing, and the directory if it created it.

    The files of a run that never trained (``metrics.jsonl``, ``environment.json``, the recipe…) would otherwise
    make the same command refuse the directory. The directory itself is removed only when it is empty.
    """
    for name in written:
        (directory / name).unlink(missing_ok=True)
    if created:
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the hidden temporaries an interrupted atomic write left in ``directory``; return them.

    A temporary is stale when the process that was writing it (its name carries the pid) no longer runs.
    """
    removed = []
    for path in directory.glob(".*.tmp"):
        match = _TEMPORARY.fullmatch(path.name)
        if match is None or _process_alive(int(match["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (the current one always does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True
