"""TensorBoard events beside ``metrics.jsonl`` (``run.tensorboard = true``; needs the ``msad[tensorboard]`` extra).

``metrics.jsonl`` stays the source of truth: every record written there is mirrored here as scalars tagged
``{type}/{name}`` (``train/total_loss``, ``eval/AP``) at the record's iteration, plus the predicted images the task
draws at each evaluation (``predictions/{name}``). Open with ``tensorboard --logdir RUN/tensorboard``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from msad.errors import MissingDependencyError

__all__ = ["TENSORBOARD_HINT", "require_tensorboard", "TensorBoardWriter"]

TENSORBOARD_HINT = (
    "run.tensorboard = true needs the tensorboard package: pip install 'msad[tensorboard]' "
    "(or set run.tensorboard = false)"
)


def require_tensorboard() -> None:
    """Raise :class:`MissingDependencyError` with a one-line hint when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401 - raises ImportError without tensorboard
    except ImportError:
        raise MissingDependencyError(TENSORBOARD_HINT) from None


class TensorBoardWriter:
    """Mirror of ``metrics.jsonl`` records (and preview images) as TensorBoard events.

    Args:
        log_dir: the event directory (``RUN/tensorboard``).
        purge_step: when resuming, events from this step on (written after the last checkpoint) are discarded,
            as :class:`~msad.engine.metrics.MetricsWriter` drops those lines.
    """

    def __init__(self, log_dir: str | Path, *, purge_step: int | None = None) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def write(self, record: Mapping[str, Any]) -> None:
        """Every finite number of a ``metrics.jsonl`` record as scalar ``{type}/{name}`` at its iteration."""
        kind, step = record.get("type", "misc"), int(record["iteration"])
        for name, value in record.items():
            if name in ("type", "iteration") or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                self._writer.add_scalar(f"{kind}/{name}", value, global_step=step)
        self._writer.flush()

    def add_images(self, images: Mapping[str, Any], step: int) -> None:
        """RGB images (PIL images or ``[H, W, 3]`` uint8 arrays) as ``predictions/{name}`` at ``step``."""
        for name, image in images.items():
            self._writer.add_image(f"predictions/{name}", np.asarray(image), global_step=step, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
