"""The contract between the engine and what it trains: the task, its loader factory, and a diverged run.

A :class:`TrainTask` supplies the model, its losses, evaluation and checkpoint metadata; a
:data:`LoaderFactory` supplies each rank's batches from any iteration on; :class:`TrainingDiverged` is what
:class:`msad.engine.trainer.Trainer` raises when the task's losses stop being finite. The engine itself lives
in :mod:`msad.engine.trainer`, which re-exports these names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from msad.errors import ResourceError

__all__ = ["LoaderFactory", "TrainTask", "TrainingDiverged"]

#: ``make_train_loader(start_iter, rank, world_size)`` → batches ``start_iter, start_iter + 1, …`` of this rank.
LoaderFactory = Callable[[int, int, int], Iterator[Any]]


@runtime_checkable
class TrainTask(Protocol):
    """What the engine trains. It knows nothing else about the model.

    Three optional methods are used when present: ``logged_scalars() -> dict[str, Tensor]`` (values of the last
    ``losses`` call logged beside the losses, rank-averaged, never optimised: e.g. the student's raw KD term and
    its ramp), ``preview(model) -> dict[str, image]`` (a few predicted images for TensorBoard at each evaluation)
    and ``window_warnings(rows) -> list[str]`` (what rank 0 should warn about after a logging window, given each of
    its iterations' logged values; the task says each thing once).

    Attributes:
        model: the trainable module (wrapped in DDP by the engine when there are several ranks).
        frozen: modules moved to the device but never wrapped or optimised (e.g. the teacher).
    """

    model: nn.Module
    frozen: dict[str, nn.Module]

    def losses(self, model: nn.Module, batch: Any, iteration: int) -> dict[str, Tensor]:
        """Named scalar losses of one batch; their sum is backpropagated."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics of ``model`` (called on every rank; rank 0's result is kept)."""

    def metadata(self) -> dict[str, str]:
        """Checkpoint metadata (role, width, recipe, classes…), string values."""


class TrainingDiverged(ResourceError, RuntimeError):
    """A loss became NaN or infinite; the run stopped without writing anything more.

    Attributes:
        iteration: the (0-based) iteration whose losses were not finite.
        losses: the rank-averaged loss terms of that iteration.
        checkpoint: the last good checkpoint, left untouched (``None`` if none was written).
    """

    def __init__(self, iteration: int, losses: dict[str, float], checkpoint: str | None) -> None:
        self.iteration, self.losses, self.checkpoint = iteration, dict(losses), checkpoint
        bad = ", ".join(k for k, v in losses.items() if not math.isfinite(v))
        terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        kept = f"the last good checkpoint {checkpoint} is left untouched" if checkpoint else "no checkpoint was written"
        super().__init__(
            f"training diverged at iteration {iteration}: non-finite {bad} ({terms}); {kept}; lower solver.lr, "
            "raise solver.warmup_iters or set solver.clip_grad_norm, then start over with --force"
        )

    def __reduce__(self) -> tuple:
        return (type(self), (self.iteration, self.losses, self.checkpoint))
