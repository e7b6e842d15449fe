"""msad.engine: the one training engine (DDP, AMP, schedule, EMA, checkpoints, exact resume, metrics).

It knows nothing about detection: it trains any :class:`TrainTask`. Import the pieces from here; weights files
and atomic writes are :mod:`msad.serialization`'s, the collectives (rank, world size, gather…) :mod:`msad.comm`'s.
"""

from msad.engine.contract import TrainingDiverged, TrainTask
from msad.engine.distributed import LaunchError, launch, resolve_device
from msad.engine.ema import ModelEMA
from msad.engine.output_dir import RunExistsError
from msad.engine.schedule import LRSchedule, build_optimizer, lr_at
from msad.engine.settings import RunSettings, SolverSettings
from msad.engine.trainer import Trainer, seed_everything
from msad.engine.training_state import TrainingState, load_training_state, save_training_state

__all__ = [
    "LaunchError",
    "launch",
    "resolve_device",
    "ModelEMA",
    "LRSchedule",
    "build_optimizer",
    "lr_at",
    "RunSettings",
    "SolverSettings",
    "RunExistsError",
    "Trainer",
    "TrainingDiverged",
    "TrainTask",
    "seed_everything",
    "TrainingState",
    "load_training_state",
    "save_training_state",
]
