"""msad.engine: the one training engine (DDP, AMP, schedule, EMA, checkpoints, exact resume, metrics).

It knows nothing about detection: it trains any :class:`TrainTask`. Import the pieces from here; weights files
and atomic writes are :mod:`msad.serialization`'s.
"""

from msad.comm import (
    all_gather_object,
    all_reduce_mean,
    barrier,
    broadcast_object,
    get_local_rank,
    get_rank,
    get_world_size,
    is_main_process,
)
from msad.engine.distributed import LaunchError, launch, resolve_device
from msad.engine.ema import ModelEMA
from msad.engine.schedule import LRSchedule, build_optimizer, lr_at
from msad.engine.settings import RunSettings, SolverSettings
from msad.engine.trainer import RunExistsError, Trainer, TrainingDiverged, TrainTask, seed_everything
from msad.engine.training_state import TrainingState, load_training_state, save_training_state

__all__ = [
    "LaunchError",
    "launch",
    "resolve_device",
    "get_rank",
    "get_local_rank",
    "get_world_size",
    "is_main_process",
    "all_reduce_mean",
    "all_gather_object",
    "broadcast_object",
    "barrier",
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
