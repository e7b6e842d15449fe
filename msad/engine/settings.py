"""The engine's own settings: plain frozen dataclasses the recipe is mapped onto.

The engine never imports the pydantic recipe models; ``msad.build`` maps a resolved recipe onto
:class:`SolverSettings` and :class:`RunSettings`, which check their own values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["AmpMode", "DeviceChoice", "SolverSettings", "RunSettings"]

#: Mixed precision: ``"off"`` (fp32), ``"bf16"`` (CPU or CUDA autocast) or ``"fp16"`` (CUDA only, with a GradScaler).
AmpMode = Literal["off", "bf16", "fp16"]
#: ``"auto"`` picks CUDA when the process group (or the machine) has it, else the CPU.
DeviceChoice = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True, kw_only=True)
class SolverSettings:
    """Optimisation hyper-parameters, every one given: the defaults are declared once, by the recipe
    (``msad.config.SolverRecipe``, mapped onto this class by ``msad.build.solver_settings``).

    Attributes:
        batch_size: images per iteration summed over all ranks (the global batch); used for images/s.
        lr: base learning rate.
        momentum: SGD momentum.
        weight_decay: weight decay of every parameter not covered below.
        weight_decay_norm: weight decay of normalisation-layer parameters (BatchNorm/GroupNorm/LayerNorm…);
            ``None`` gives them ``weight_decay``.
        weight_decay_bias: weight decay of biases (detectron2's ``WEIGHT_DECAY_BIAS``); ``None`` gives them
            the decay of their layer.
        iters: total number of iterations.
        steps: iterations at which the lr is multiplied by ``gamma``.
        gamma: lr decay factor at each step.
        warmup_iters: length of the linear warm-up.
        warmup_factor: lr multiplier at iteration 0 of the warm-up.
        clip_grad_norm: max global gradient L2 norm; ``0`` disables clipping.
        amp: mixed precision mode.
        ema_decay: decay of an exponential moving average of the weights; ``0`` disables it.
    """

    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    weight_decay_norm: float | None
    weight_decay_bias: float | None
    iters: int
    steps: tuple[int, ...]
    gamma: float
    warmup_iters: int
    warmup_factor: float
    clip_grad_norm: float
    amp: AmpMode
    ema_decay: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(int(s) for s in self.steps))
        _check(self.batch_size > 0, f"solver.batch_size must be positive, got {self.batch_size}")
        _check(self.lr > 0, f"solver.lr must be positive, got {self.lr}")
        _check(self.iters > 0, f"solver.iters must be positive, got {self.iters}")
        _check(list(self.steps) == sorted(self.steps), f"solver.steps must be increasing, got {self.steps}")
        _check(self.warmup_iters >= 0, f"solver.warmup_iters must be >= 0, got {self.warmup_iters}")
        _check(self.clip_grad_norm >= 0, f"solver.clip_grad_norm must be >= 0, got {self.clip_grad_norm}")
        _check(self.amp in ("off", "bf16", "fp16"), f"solver.amp must be off, bf16 or fp16, got {self.amp!r}")
        _check(0 <= self.ema_decay < 1, f"solver.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """Where and how a run writes, evaluates and checkpoints, every value given: the defaults are declared once,
    by the recipe (``msad.config.RunRecipe``, mapped onto this class by ``msad.build.run_settings``).

    Attributes:
        output: run directory (metrics, checkpoints, training state, plots).
        seed: base seed; rank ``r`` seeds its generators with ``seed + r``.
        eval_period: evaluate every this many iterations; ``0`` evaluates only at the end (always done).
        checkpoint_period: write ``model_{iter:07d}.safetensors``, ``last.safetensors`` and the training state
            every this many iterations; ``0`` only at the end (always done).
        keep_checkpoints: how many periodic ``model_*.safetensors`` files to keep (older ones are removed);
            ``0`` keeps none (``last`` and ``best`` are always kept).
        log_period: write a ``metrics.jsonl`` line (and a plain log line without a TTY) every this many iterations.
        best_metric: evaluation metric that selects ``best.safetensors`` (higher is better); ``None`` disables it.
        sync_bn: convert the trained model's BatchNorm to SyncBatchNorm when training on several CUDA ranks:
            ``True``, ``False``, or ``"auto"`` (the default: on whenever the model has BatchNorm layers).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        tensorboard: also write the ``metrics.jsonl`` scalars, and a few predicted images at each evaluation,
            as TensorBoard events under ``output/tensorboard`` (needs the ``msad[tensorboard]`` extra).
        compile: run the training forward through ``torch.compile`` (the EMA, evaluation and saved weights use the
            eager module); off unless asked for.
        checkpoint_minutes: also write ``last.safetensors`` and the training state at the first log boundary after
            this many minutes without a checkpoint (rank 0's clock, agreed by all ranks); ``0`` turns it off.
        dist_timeout_minutes: the process group's timeout (:func:`msad.engine.launch`'s ``timeout_minutes``): a
            collective that waits longer for a hung or lost rank fails the run (which a restart may then resume).
    """

    output: Path
    seed: int
    eval_period: int
    checkpoint_period: int
    keep_checkpoints: int
    log_period: int
    best_metric: str | None
    sync_bn: bool | str
    device: DeviceChoice
    tensorboard: bool
    compile: bool
    checkpoint_minutes: float
    dist_timeout_minutes: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", Path(self.output))
        for name in ("eval_period", "checkpoint_period", "keep_checkpoints"):
            _check(getattr(self, name) >= 0, f"run.{name} must be >= 0, got {getattr(self, name)}")
        _check(self.checkpoint_minutes >= 0, f"run.checkpoint_minutes must be >= 0, got {self.checkpoint_minutes}")
        _check(self.dist_timeout_minutes > 0, f"run.dist_timeout_minutes must be positive, got {self.dist_timeout_minutes}")
        _check(self.log_period > 0, f"run.log_period must be positive, got {self.log_period}")
        _check(self.device in ("auto", "cpu", "cuda"), f"run.device must be auto, cpu or cuda, got {self.device!r}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
