"""The engine's own settings: the one declaration of the solver's and the run's fields, types, constraints and
defaults.

The engine never imports the pydantic recipe models: the recipe's ``[solver]`` and ``[run]`` tables
(``msad.config.SolverRecipe`` / ``RunRecipe``) are derived from these classes, and ``msad.build`` maps a resolved
recipe onto them. They are pydantic dataclasses, so that a value given in code is checked by the same rules as one
read from a recipe. This module imports no torch (``msad.config`` reads it).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

__all__ = [
    "AmpMode",
    "DeviceChoice",
    "PositiveInt",
    "NonNegativeInt",
    "PositiveFloat",
    "NonNegativeFloat",
    "SolverSettings",
    "RunSettings",
    "steps_problem",
]

#: Mixed precision: ``"off"`` (fp32), ``"bf16"`` (CPU or CUDA autocast) or ``"fp16"`` (CUDA only, with a GradScaler).
AmpMode = Literal["off", "bf16", "fp16"]
#: ``"auto"`` picks CUDA when the process group (or the machine) has it, else the CPU.
DeviceChoice = Literal["auto", "cpu", "cuda"]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]

_STRICT = ConfigDict(extra="forbid")


def steps_problem(steps: tuple[int, ...] | list[int], iters: int) -> str | None:
    """What is wrong with the lr decay ``steps`` of a run of ``iters`` iterations (``None``: nothing)."""
    if any(b <= a for a, b in pairwise(steps)):
        return f"steps must be strictly increasing, got {list(steps)}"
    if steps and steps[-1] >= iters:
        return f"steps must be < iters ({iters}), got {list(steps)}"
    return None


@dataclass(frozen=True, kw_only=True, config=_STRICT)
class SolverSettings:
    """Optimisation hyper-parameters: the one declaration of the solver's fields and defaults (``[solver]``,
    ``[teacher.solver]`` and ``[distill.solver]`` in a recipe are derived from it).

    The warm-up follows detectron2's ``WarmupMultiStepLR`` as FCOS/AdelaiDet run it: linear, from
    ``warmup_factor = 0.001`` (detectron2's ``WARMUP_FACTOR``, left unchanged by AdelaiDet's ``Base-FCOS.yaml``)
    over the paper's 500 iterations.

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
        steps: iterations at which the lr is multiplied by ``gamma`` (strictly increasing, each < ``iters``).
        gamma: lr decay factor at each step.
        warmup_iters: length of the linear warm-up.
        warmup_factor: lr multiplier at iteration 0 of the warm-up.
        clip_grad_norm: max global gradient L2 norm; ``0`` disables clipping.
        amp: mixed precision mode.
        ema_decay: decay of an exponential moving average of the weights; ``0`` disables it.
    """

    batch_size: PositiveInt
    lr: PositiveFloat
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: NonNegativeFloat = 1e-4
    weight_decay_norm: NonNegativeFloat | None = None
    weight_decay_bias: NonNegativeFloat | None = None
    iters: PositiveInt
    steps: tuple[PositiveInt, ...] = ()
    gamma: PositiveFloat = 0.1
    warmup_iters: NonNegativeInt = 500
    warmup_factor: Annotated[float, Field(gt=0, le=1)] = 0.001
    clip_grad_norm: NonNegativeFloat = 0.0
    amp: AmpMode = "off"
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0

    @model_validator(mode="after")
    def _steps(self) -> SolverSettings:
        problem = steps_problem(self.steps, self.iters)
        if problem is not None:
            raise ValueError(problem)
        return self


@dataclass(frozen=True, kw_only=True, config=_STRICT)
class RunSettings:
    """Where and how a run writes, evaluates and checkpoints: the one declaration of these fields and defaults
    (a recipe's ``[run]`` table is derived from it).

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
            collective that waits longer for a hung or lost rank fails the run (which ``--max-restarts``, or
            torchrun's, may then restart from the last checkpoint).
    """

    output: Path = Path("runs/default")
    seed: int = 0
    eval_period: NonNegativeInt = 0
    checkpoint_period: NonNegativeInt = 0
    keep_checkpoints: NonNegativeInt = 3
    log_period: PositiveInt = 20
    best_metric: str | None = "AP"
    sync_bn: bool | Literal["auto"] = "auto"
    device: DeviceChoice = "auto"
    tensorboard: bool = False
    compile: bool = False
    checkpoint_minutes: NonNegativeFloat = 30.0
    dist_timeout_minutes: PositiveFloat = 30.0
