"""A toy TrainTask (linear regression) and a script entry point, for the engine tests.

Importable as ``toytask`` by the tests and by spawned ranks (pytest puts this directory on ``sys.path``), and
runnable as ``python toytask.py OUTPUT ...`` for the SIGKILL-resume test.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from msad.comm import all_gather_object, get_rank, get_world_size
from msad.engine import RunSettings, SolverSettings, Trainer

IN_FEATURES = 4
TRUE_WEIGHT = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
VAL_SIZE = 13  # not divisible by 2: uneven shards


@dataclass
class ToyBatch:
    """Inputs and regression targets."""

    x: Tensor
    y: Tensor

    def to(self, device: torch.device | str) -> ToyBatch:
        """Copy to ``device``."""
        return ToyBatch(self.x.to(device), self.y.to(device))


class SimulatedCrash(RuntimeError):
    """Raised by :class:`ToyTask` at ``crash_at`` to stop a run mid-way (a stand-in for a killed process)."""


class ToyTask:
    """Linear regression with an optional random per-sample weighting (exercises the RNG), NaN, crash and sleep."""

    def __init__(self, *, noise: float = 0.0, nan_at: int | None = None, sleep: float = 0.0,
                 crash_at: int | None = None, kill_at: int | None = None, marker: str | None = None,
                 signal_at: tuple[int, int, int] | None = None) -> None:
        generator = torch.Generator().manual_seed(1234)
        self.model = nn.Linear(IN_FEATURES, 1)
        with torch.no_grad():
            self.model.weight.copy_(torch.randn(1, IN_FEATURES, generator=generator))
            self.model.bias.zero_()
        self.frozen: dict[str, nn.Module] = {}
        self.noise, self.nan_at, self.sleep, self.crash_at = noise, nan_at, sleep, crash_at
        self.kill_at, self.marker, self.signal_at = kill_at, marker, signal_at

    def losses(self, model: nn.Module, batch: ToyBatch, iteration: int) -> dict[str, Tensor]:
        """Weighted MSE plus a small L2 term."""
        if self.sleep:
            time.sleep(self.sleep)
        if iteration == self.crash_at:
            raise SimulatedCrash(f"simulated crash at iteration {iteration}")
        if iteration == self.kill_at and get_rank() == 1 and not Path(self.marker).exists():
            Path(self.marker).touch()  # once: the restarted group must not be killed again
            os.kill(os.getpid(), signal.SIGKILL)
        if self.signal_at is not None and (iteration, get_rank()) == self.signal_at[:2]:
            os.kill(os.getpid(), self.signal_at[2])  # a scheduler's preemption notice, to this rank only
        weights = 1 + self.noise * torch.rand(batch.x.shape[0], 1) if self.noise else 1.0
        mse = ((model(batch.x) - batch.y) ** 2 * weights).mean()
        if iteration == self.nan_at:
            mse = mse * math.nan
        l2 = 1e-3 * sum(p.pow(2).sum() for p in model.parameters())
        return {"loss_mse": mse, "loss_l2": l2}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``AP`` = minus the error of the weights (higher is better); ``val_mse`` over a fixed validation set.

        The validation set is sharded over ranks (contiguous slices) and the per-sample errors are gathered,
        like the COCO evaluation, so every rank takes part in the collective.
        """
        rank, world_size = get_rank(), get_world_size()
        generator = torch.Generator().manual_seed(99)
        x = torch.randn(VAL_SIZE, IN_FEATURES, generator=generator)
        y = x @ TRUE_WEIGHT
        base, extra = divmod(VAL_SIZE, world_size)
        begin = rank * base + min(rank, extra)
        end = begin + base + (1 if rank < extra else 0)
        with torch.no_grad():
            errors = (model(x[begin:end]) - y[begin:end]).pow(2).squeeze(1).tolist()
        gathered = [e for part in all_gather_object(errors) for e in part]
        if len(gathered) != VAL_SIZE:
            raise AssertionError(f"gathered {len(gathered)} validation errors, expected {VAL_SIZE}")
        error = (model.weight.detach().cpu().T - TRUE_WEIGHT).pow(2).sum().item()
        return {"AP": -error, "bias": model.bias.item(), "val_mse": sum(gathered) / VAL_SIZE}

    def metadata(self) -> dict[str, str]:
        """Checkpoint metadata."""
        return {"role": "toy"}


def make_loader(seed: int, global_batch: int):
    """A loader factory whose global batch ``i`` depends only on ``(seed, i)``; rank ``r`` takes its slice."""

    def factory(start: int, rank: int, world_size: int) -> Iterator[ToyBatch]:
        per_rank = global_batch // world_size
        for index in itertools.count(start):
            generator = torch.Generator().manual_seed(seed * 100_003 + index)
            x = torch.randn(global_batch, IN_FEATURES, generator=generator)
            y = x @ TRUE_WEIGHT + 0.1 * torch.randn(global_batch, 1, generator=generator)
            part = slice(rank * per_rank, (rank + 1) * per_rank)
            yield ToyBatch(x[part], y[part])

    return factory


def settings(output: Path, *, iters: int = 12, ema: float = 0.0, checkpoint_period: int = 4, eval_period: int = 4,
             batch: int = 8, checkpoint_minutes: float = 0.0) -> tuple[SolverSettings, RunSettings]:
    """Solver and run settings for the toy runs (warm-up, a step, clipping, weight decay)."""
    solver = SolverSettings(batch_size=batch, lr=0.05, momentum=0.9, weight_decay=1e-3, weight_decay_norm=0.0,
                            weight_decay_bias=None, iters=iters, steps=(iters * 2 // 3,), gamma=0.1, warmup_iters=3,
                            warmup_factor=0.1, clip_grad_norm=5.0, amp="off", ema_decay=ema)
    run = RunSettings(output=output, seed=7, eval_period=eval_period, checkpoint_period=checkpoint_period,
                      keep_checkpoints=2, log_period=2, best_metric="AP", sync_bn=False, device="cpu", tensorboard=False,
                      compile=False, checkpoint_minutes=checkpoint_minutes,
                      dist_timeout_minutes=30.0)
    return solver, run


def train(output: str, iters: int, ema: float, noise: float, sleep: float, checkpoint_period: int,
          resume: bool = False, faults: dict | None = None, checkpoint_minutes: float = 0.0) -> dict[str, Tensor]:
    """Train the toy task; return the trained (and EMA) weights. Module-level so spawned ranks can run it.

    ``faults``: :class:`ToyTask` keywords that break the run (``crash_at``, ``kill_at`` + ``marker``, ``signal_at``).
    """
    task = ToyTask(noise=noise, sleep=sleep, **(faults or {}))
    solver, run = settings(Path(output), iters=iters, ema=ema, checkpoint_period=checkpoint_period,
                           checkpoint_minutes=checkpoint_minutes)
    trainer = Trainer(task, solver=solver, run=run, make_train_loader=make_loader(3, solver.batch_size),
                      resume=resume, echo=lambda _: None)
    metrics = trainer.fit()
    weights = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    if trainer.ema is not None:
        weights |= {f"ema.{k}": v.clone() for k, v in trainer.ema.state_dict().items()}
    weights["momentum"] = trainer.optimizer.state[trainer.model.weight]["momentum_buffer"].clone()
    weights["AP"] = torch.tensor(metrics["AP"])
    weights["val_mse"] = torch.tensor(metrics["val_mse"])
    return weights


def fail_on_rank_one(message: str) -> None:
    """Raise on rank 1 (tests the launcher's error propagation)."""
    from msad.comm import get_rank

    if get_rank() == 1:
        raise KeyError(message)
    torch.distributed.barrier()


def main() -> None:
    """``python toytask.py OUTPUT --iters N --sleep S --noise X --checkpoint-period K``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--ema", type=float, default=0.0)
    parser.add_argument("--checkpoint-period", type=int, default=5)
    args = parser.parse_args()
    train(args.output, args.iters, args.ema, args.noise, args.sleep, args.checkpoint_period)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
