"""msad.engine: the one training engine (DDP, AMP, schedule, EMA, checkpoints, exact resume, metrics).

It knows nothing about detection: it trains any :class:`TrainTask`. Import the pieces from here; weights files
and atomic writes are :mod:`msad.serialization`'s, the collectives (rank, world size, gather…) :mod:`msad.comm`'s.

The names below are imported on first use (PEP 562), so that importing :mod:`msad.engine.settings` alone — the
declaration of the solver and run fields, which ``msad.config`` derives the recipe tables from — imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from msad.engine.contract import TrainingDiverged, TrainTask
    from msad.engine.distributed import LaunchError, launch, resolve_device
    from msad.engine.ema import ModelEMA
    from msad.engine.output_dir import RunExistsError
    from msad.engine.schedule import LRSchedule, build_optimizer, lr_at
    from msad.engine.settings import RunSettings, SolverSettings
    from msad.engine.trainer import Trainer, seed_everything
    from msad.engine.training_state import TrainingState, load_training_state, save_training_state

#: Each public name → the module that defines it.
_HOMES: dict[str, str] = {
    "LaunchError": "distributed",
    "launch": "distributed",
    "resolve_device": "distributed",
    "ModelEMA": "ema",
    "LRSchedule": "schedule",
    "build_optimizer": "schedule",
    "lr_at": "schedule",
    "RunSettings": "settings",
    "SolverSettings": "settings",
    "RunExistsError": "output_dir",
    "Trainer": "trainer",
    "TrainingDiverged": "contract",
    "TrainTask": "contract",
    "seed_everything": "trainer",
    "TrainingState": "training_state",
    "load_training_state": "training_state",
    "save_training_state": "training_state",
}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    """A public name (imported from its module now) or a submodule."""
    home = _HOMES.get(name)
    if home is None:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
