"""What a run reports: ``metrics.jsonl`` and ``environment.json`` (the progress display is :mod:`msad.engine.progress`).

``metrics.jsonl`` has one JSON object per line with a ``type``: ``"train"`` lines (``iteration`` = completed
iterations, ``lr``, each loss, ``total_loss``, ``images_per_s`` of the global batch, ``time`` = seconds per
iteration over the logging window, ``elapsed``) and ``"eval"`` lines (``iteration`` and the task's metrics).
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import msad
from msad.console import on_terminal
from msad.engine.progress import Progress  # re-exported: msad 0.1's import path (released API)
from msad.serialization import atomic_write_text

__all__ = ["MetricsWriter", "finite_or_none", "strict_json", "read_metrics", "Progress", "use_rich_progress", "environment_info"]

# msad 0.1's name (released API), kept: a live display only on a terminal and never under ``CI=true``
use_rich_progress = on_terminal


class MetricsWriter:
    """Appends JSON lines to ``metrics.jsonl``.

    Args:
        path: the file.
        resume_iteration: when resuming, lines from after this iteration (written by the interrupted run past its
            last checkpoint) are dropped first; ``None`` starts a fresh file.
    """

    def __init__(self, path: str | Path, *, resume_iteration: int | None = None) -> None:
        self.path = Path(path)
        kept = []
        if resume_iteration is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if int(r.get("iteration", 0)) <= resume_iteration]
        atomic_write_text(self.path, "".join(strict_json(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (flushed at once so that an interrupted run keeps it)."""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(strict_json(record) + "\n")


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float (nested in dicts, lists, tuples) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def strict_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes ``null`` for an undefined number (NaN, ±inf), so strict parsers read the result."""
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (an unfinished last line is ignored)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def environment_info(*, world_size: int, device: str, **extra: Any) -> dict[str, Any]:
    """Versions and placement of a run, for ``environment.json``."""
    import torchvision  # a dependency; imported here only because it is slow to import
    info = {
        "msad": msad.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "git_commit": _git_commit(),
        "platform": platform.platform(),
        "world_size": world_size,
        "device": device,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu",
        "argv": sys.argv,
    }
    return info | extra


def _git_commit() -> str | None:
    """The commit of the msad source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(msad.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
