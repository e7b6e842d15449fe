"""The one training engine: any :class:`TrainTask` (baseline, teacher, student), one rank or many.

One iteration (:meth:`Trainer.run_step`): set the lr, forward under autocast, backward (through a GradScaler
for fp16), clip, step, update the EMA. The loss values stay on the device; they are averaged over the ranks (one
all-reduce) and reach the host every ``log_period`` iterations and before any checkpoint or evaluation, where a
non-finite one stops the run (naming its iteration) before anything more is written: no collective and no host
synchronisation per step beyond DDP's own gradient all-reduce.
Around it, :meth:`Trainer.fit` evaluates every ``eval_period`` iterations and at the end, checkpoints every
``checkpoint_period`` iterations, every ``checkpoint_minutes`` and at the end, and logs to ``metrics.jsonl`` and
the progress display. SIGTERM/SIGUSR1 stop every rank at the same flush boundary after a checkpoint
(:mod:`msad.engine.preemption`); a group restarted by the elastic agent (``TORCHELASTIC_RESTART_COUNT`` > 0)
resumes its own run by itself.

AMP: ``bf16`` autocasts on CUDA and on the CPU; ``fp16`` needs CUDA (it is refused on the CPU, where fp16
autocast is slow and poorly supported) and uses a GradScaler whose state is part of the training state.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from msad import comm
from msad.console import format_metric, plural, timestamped
from msad.engine import distributed as du
from msad.engine.contract import LoaderFactory, TrainingDiverged, TrainTask
from msad.engine.elastic import max_restarts, restart_count
from msad.engine.ema import ModelEMA
from msad.engine.metrics import MetricsWriter, environment_info, read_metrics
from msad.engine.output_dir import (
    RunExistsError,
    decide_output,
    forget_failed_start,
    remove_stale_temporaries,
    restart_starts_over,
)
from msad.engine.preemption import CheckpointClock, StopSignals, agree, signal_name
from msad.engine.progress import Progress
from msad.engine.schedule import LRSchedule, build_optimizer
from msad.engine.settings import RunSettings, SolverSettings
from msad.engine.tensorboard import TensorBoardWriter, require_tensorboard
from msad.engine.training_state import (
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
    update_state_extra,
)
from msad.errors import Preempted, RecipeError
from msad.plots import plot_curves
from msad.serialization import atomic_write_text, save_weights

__all__ = ["TrainTask", "TrainingDiverged", "RunExistsError", "Trainer", "seed_everything"]
# TrainTask, TrainingDiverged (msad.engine.contract) and RunExistsError (msad.engine.output_dir) live elsewhere;
# re-exported here because msad 0.1 released them from this module.

#: What :meth:`Trainer.run_step` returns: ``(iteration, lr, names, device values)``.
StepResult = tuple[int, float, list[str], Tensor]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (when installed) and torch (CPU and CUDA)."""
    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed % 2**32)


class Trainer:
    """Train a :class:`TrainTask` with SGD, the lr schedule, AMP, clipping, EMA, evaluation and checkpoints.

    Args:
        task: what to train.
        solver: optimisation settings.
        run: output, periods, seed, device.
        make_train_loader: ``(start_iter, rank, world_size) -> iterator`` of this rank's batches from
            ``start_iter`` on; batch ``i`` must depend only on ``(seed, i, rank)`` so that resume is exact.
            Batches need a ``.to(device)`` method.
        resume: continue the run saved in ``run.output`` (a fresh start when it holds no run at all).
        force: start a fresh run even though ``run.output`` holds one (its files are overwritten, never deleted).
        echo: rank 0's plain output (one-line messages).
        files: text files (name → content) rank 0 writes into the run directory once it has been accepted
            (e.g. the resolved recipe); never written into a directory the run refused.
        about: what the start banner adds to the engine's own facts (e.g. the data sizes).
    """

    def __init__(
        self,
        task: TrainTask,
        *,
        solver: SolverSettings,
        run: RunSettings,
        make_train_loader: LoaderFactory,
        resume: bool = False,
        force: bool = False,
        echo: Callable[[str], None] = print,
        files: dict[str, str] | None = None,
        about: str = "",
    ) -> None:
        self.task, self.solver, self.run = task, solver, run
        self.make_train_loader, self.resume, self.force, self.echo = make_train_loader, resume, force, echo
        self.files = dict(files or {})
        self.about = about
        self.output = Path(run.output)
        self.best: float | None = None
        self.checkpoints: list[str] = []
        self.start_iter = 0
        self.final_metrics: dict[str, float] = {}
        self.resuming = False
        self._created_output = False
        self._iterations_done = 0
        self._written: list[str] = []  # files this start wrote, removed again if it fails before training
        self.tensorboard: TensorBoardWriter | None = None
        self._signals = StopSignals()
        self._clock = CheckpointClock(run.checkpoint_minutes)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Place modules, build optimizer/EMA/scaler, restore a saved state, wrap in DDP, open the logs."""
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()
        self.device = du.resolve_device(self.run.device)
        if self.solver.amp == "fp16" and self.device.type != "cuda":
            raise RecipeError("solver.amp = 'fp16' needs CUDA; use 'bf16' or 'off' on the CPU")
        if self.run.tensorboard:
            require_tensorboard()  # before anything is written
        resuming = self._check_output()
        seed_everything(self.run.seed + self.rank)
        model = self.task.model.to(self.device)
        for module in self.task.frozen.values():
            module.to(self.device)
        model, note = du.sync_batchnorm(model, setting=self.run.sync_bn, world_size=self.world_size,
                                        device_type=self.device.type)
        self.task.model = model
        if note:
            self._say(note)
        self.model = model.train()
        # fp16 (CUDA only): the fused SGD skips an overflowed step on the device, where the GradScaler would sync
        self.optimizer = build_optimizer(model, self.solver, fused=self.solver.amp == "fp16")
        self.schedule = LRSchedule(self.optimizer, self.solver)
        self.ema = ModelEMA(model, self.solver.ema_decay) if self.solver.ema_decay > 0 else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.solver.amp == "fp16")
        if resuming:
            self._restore()
        self.ddp_model: nn.Module = model
        if self.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # forward_sync_buffers=False (the old broadcast_buffers=False): with SyncBatchNorm the running statistics are already the same on every rank
            # (redundant); with per-GPU BatchNorm, broadcasting rank 0's at every forward would overwrite the
            # per-rank statistics per-GPU BN means to keep. Nothing in training reads them (train-mode BN uses batch
            # statistics); the saved weights are rank 0's, and evaluate() gives every rank rank 0's buffers first.
            self.ddp_model = DistributedDataParallel(
                model, device_ids=device_ids, find_unused_parameters=False, forward_sync_buffers=False,
                gradient_as_bucket_view=True,
            )
        if self.run.compile:  # the training forward only: eval_model() and the saved weights stay the eager module
            self.ddp_model = torch.compile(self.ddp_model)
        self.resuming = resuming
        self.metrics = MetricsWriter(self.output / "metrics.jsonl", resume_iteration=self.start_iter if resuming else None) if self.rank == 0 else None
        self._written.append("metrics.jsonl")
        if self.rank == 0 and self.run.tensorboard:
            purge = self.start_iter if resuming else None
            self.tensorboard = TensorBoardWriter(self.output / "tensorboard", purge_step=purge)
        self._say(timestamped(self._banner()))
        self.progress = Progress(
            total=self.solver.iters, start=self.start_iter, log_period=self.run.log_period,
            enabled=self.rank == 0, echo=self.echo, label=self.task.metadata().get("role", "train"),
            batch_size=self.solver.batch_size,
        )
        if self.rank == 0:
            remove_stale_temporaries(self.output)
            info = environment_info(world_size=self.world_size, device=str(self.device), amp=self.solver.amp,
                                    resumed_from=self.start_iter if resuming else None)
            atomic_write_text(self.output / "environment.json", json.dumps(info, indent=1))
            self._written.append("environment.json")
            for name, text in self.files.items():
                atomic_write_text(self.output / name, text)
                self._written.append(name)

    def _banner(self) -> str:
        """The start line: what trains, where to, for how long, on what."""
        span = (f"iterations {self.start_iter}→{self.solver.iters} (resumed)" if self.resuming
                else plural(self.solver.iters, "iteration"))
        ranks = f"{self.world_size} rank{'s' if self.world_size > 1 else ''}"
        facts = [f"{self.task.metadata().get('role', 'training')} → {self.output}", f"{span} of batch {self.solver.batch_size}",
                 f"{self.device.type} × {ranks}", f"amp {self.solver.amp}", self.about]
        return "  |  ".join(fact for fact in facts if fact)

    def _check_output(self) -> bool:
        """Decide (on rank 0, shared with all) whether this run resumes; refuse to overwrite a run."""
        decision: tuple[bool, str | None] = (False, None)
        if self.rank == 0:
            decision = self._output_decision()
        resuming, error = comm.broadcast_object(decision)
        if error:
            raise RunExistsError(error)
        return resuming

    def _output_decision(self) -> tuple[bool, str | None]:
        """``(resuming, error message)`` for the output directory.

        A group the elastic agent restarted continues its own run: it resumes (never forces), or starts over when
        the failed attempt died before its first checkpoint and left nothing of value (see
        :func:`restart_starts_over`).
        """
        resume, force = self.resume, self.force
        restart = restart_count()
        if restart:
            resume, force = True, restart_starts_over(self.output, self.files.get("recipe.json"))
            self._say(f"restart {restart} of at most {max_restarts()} after a failed rank: continuing {self.output}")
        resuming, error, self._created_output = decide_output(self.output, resume=resume, force=force, say=self._say)
        return resuming, error

    def _restore(self) -> None:
        """Load the saved training state into the model, optimizer, EMA, scaler and RNGs."""
        state = load_training_state(self.output, model=self.model, optimizer=self.optimizer, ema=self.ema)
        self.start_iter = state.iteration
        self.best = state.extra.get("best")
        self.checkpoints = list(state.extra.get("checkpoints", []))
        if self.scaler.is_enabled() and state.extra.get("grad_scaler"):
            self.scaler.load_state_dict(state.extra["grad_scaler"])
        if len(state.rng) == self.world_size:
            restore_rng_state(state.rng[self.rank])
        else:
            seed_everything(self.run.seed + self.rank + state.iteration)
            self._say(f"saved with {len(state.rng)} ranks, resuming on {self.world_size}: RNG streams re-seeded")
        best = "none" if self.best is None else f"{self.run.best_metric}={self.best:.4g}"
        self._say(f"resumed {self.output} at iteration {self.start_iter}/{self.solver.iters} (best {best})")

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, float]:
        """Train to ``solver.iters`` and return the final evaluation metrics (rank 0's, on every rank)."""
        try:
            with self._signals:
                self.setup()
                if self.start_iter >= self.solver.iters:
                    self.evaluate(self.start_iter)
                else:
                    self._train()
                comm.barrier()
        except BaseException:
            self._forget_failed_start()
            raise
        finally:
            if hasattr(self, "progress"):
                self.progress.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
        if self.rank == 0:
            self._plot()
        return self.final_metrics

    def _train(self) -> None:
        """The iteration loop from ``start_iter``.

        Each step's loss terms stay on the device; they are brought to the host (one synchronisation) every
        ``run.log_period`` iterations and before any checkpoint, evaluation or the end, checked for NaN/inf
        (raising :class:`TrainingDiverged` for the first bad iteration, before anything more is written), then
        logged and shown.
        """
        loader = iter(self.make_train_loader(self.start_iter, self.rank, self.world_size))
        window: dict[str, float] = {}
        rows: list[dict[str, float]] = []  # the logging window's per-iteration values, for the task's warnings
        pending: list[StepResult] = []
        count, window_start = 0, time.perf_counter()
        for iteration in range(self.start_iter, self.solver.iters):
            pending.append(self.run_step(iteration, _next_batch(loader, iteration)))
            done, count = iteration + 1, count + 1
            self._iterations_done += 1
            self.progress.step(done)
            last_iter = done == self.solver.iters
            to_checkpoint = last_iter or bool(self.run.checkpoint_period and done % self.run.checkpoint_period == 0)
            to_evaluate = last_iter or bool(self.run.eval_period and done % self.run.eval_period == 0)
            to_log = last_iter or done % self.run.log_period == 0
            if not (to_log or to_checkpoint or to_evaluate):
                continue
            stats = {}
            for stats in self._flush(pending):
                rows.append(stats)
                for key, value in stats.items():
                    window[key] = window.get(key, 0.0) + value
            pending = []
            if to_log:  # the display shows what metrics.jsonl holds: the means over the logging window
                means = {k: v / count for k, v in window.items()} | {"lr": stats["lr"]}
                self._log_train(done, means, (time.perf_counter() - window_start) / count)
                self.progress.update(done, means)
                self._window_warnings(done, rows)
                window, rows, count, window_start = {}, [], 0, time.perf_counter()
            stop, due = agree(self._signals.received, self.rank == 0 and self._clock.due(), device=self.device)
            # checkpoint first: an evaluation that fails never costs the weights or the resumable state
            if to_checkpoint or due or stop:
                self.checkpoint(done)
            if stop:
                raise self._preempted(stop, done)
            if to_evaluate:
                self.evaluate(done)

    def _preempted(self, signum: int, done: int) -> Preempted:
        """The error that ends a run stopped by ``signum`` after its checkpoint at ``done`` (the same on every rank)."""
        return Preempted(
            f"training stopped by {signal_name(signum)} at iteration {done}/{self.solver.iters}: checkpoint "
            f"{self.output / 'last.safetensors'} written; continue with the same command and --resume", signum,
        )

    def run_step(self, iteration: int, batch: Any) -> StepResult:
        """One optimisation step without a host synchronisation.

        Returns:
            ``(iteration, lr, names, values)``: this rank's loss terms, ``total_loss`` and the task's logged
            scalars as one device tensor; :meth:`_flush` averages them over the ranks, brings them to the host and
            checks them (NaN/inf raise :class:`TrainingDiverged` there, before any checkpoint, evaluation or log
            line is written).
        """
        lr = self.schedule.step(iteration)
        batch = batch.to(self.device)
        with self._autocast():
            losses = self.task.losses(self.ddp_model, batch, iteration)
        if not losses:
            raise ValueError("task.losses returned no loss terms")
        total = sum(losses.values())
        logged = self.task.logged_scalars() if hasattr(self.task, "logged_scalars") else {}
        values = torch.stack([v.detach().float().reshape(()) for v in [*losses.values(), total, *logged.values()]])
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.solver.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.solver.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        names = [*losses, "total_loss", "|", *logged]  # "|" separates the checked terms from the logged ones
        return iteration, lr, names, values

    def _flush(self, pending: list[StepResult]) -> Iterator[dict[str, float]]:
        """The rank-averaged host values of pending steps, in order; raises on the first non-finite one.

        One all-reduce and one host synchronisation for all pending steps (every rank flushes at the same iterations).
        """
        if not pending:
            return
        host = comm.all_reduce_mean(torch.cat([values for *_, values in pending])).tolist()
        offset = 0
        for iteration, lr, names, values in pending:
            row, offset = host[offset: offset + len(values)], offset + len(values)
            checked = names.index("|")
            stats = dict(zip(names[:checked] + names[checked + 1:], row, strict=True))
            if not all(math.isfinite(v) for v in row[:checked]):
                last = self.output / "last.safetensors"
                raise TrainingDiverged(iteration, stats, str(last) if last.exists() else None)
            yield {"lr": lr, **stats}

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for the configured AMP mode (a no-op when off)."""
        if self.solver.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.solver.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # ------------------------------------------------------------------ eval, checkpoints, logs
    def eval_model(self) -> nn.Module:
        """The module evaluated and saved: the EMA when on, else the trained model (never the DDP wrapper)."""
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self, done: int) -> dict[str, float]:
        """Evaluate on every rank, keep rank 0's metrics, update the best checkpoint."""
        model = self.eval_model()
        comm.broadcast_buffers(model)  # per-GPU BN statistics: every shard is evaluated with rank 0's, the saved ones
        was_training = model.training
        model.eval()
        with torch.no_grad(), self.progress.paused():  # the evaluation shows its own progress
            metrics = self.task.evaluate(model)
        model.train(was_training)
        metrics = comm.broadcast_object(dict(metrics))
        self.final_metrics = metrics
        if self.rank != 0:
            return metrics
        self._record({"type": "eval", "iteration": done, **metrics})
        if self.tensorboard is not None and hasattr(self.task, "preview"):
            self._preview(model, done)
        shown = "  ".join(f"{k} {format_metric(v)}" for k, v in metrics.items() if isinstance(v, float | int))
        self.progress.message(f"eval @ {done}: {shown}")
        value = metrics.get(self.run.best_metric) if self.run.best_metric else None
        if value is not None and math.isfinite(value) and (self.best is None or value > self.best):
            self.best = float(value)
            save_weights(self.output / "best.safetensors", self.eval_model().state_dict(), self._metadata(done))
            update_state_extra(self.output, iteration=done, changes={"best": self.best})  # checkpointed before this eval
        return metrics

    def checkpoint(self, done: int) -> None:
        """Write ``model_{done}`` (periodic), ``last`` and the training state; every rank must call it (RNG)."""
        rng = comm.all_gather_object(capture_rng_state())
        self._clock.reset()
        if self.rank != 0:
            return
        weights, metadata = self.eval_model().state_dict(), self._metadata(done)
        periodic = self.run.checkpoint_period and done % self.run.checkpoint_period == 0
        if periodic and self.run.keep_checkpoints > 0:
            name = f"model_{done:07d}.safetensors"
            save_weights(self.output / name, weights, metadata)
            self.checkpoints = [c for c in self.checkpoints if c != name] + [name]
            for old in self.checkpoints[: -self.run.keep_checkpoints]:
                (self.output / old).unlink(missing_ok=True)
            self.checkpoints = self.checkpoints[-self.run.keep_checkpoints:]
        save_weights(self.output / "last.safetensors", weights, metadata)
        extra = {"best": self.best, "best_metric": self.run.best_metric, "checkpoints": self.checkpoints,
                 "grad_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None}
        save_training_state(self.output, model=self.model, optimizer=self.optimizer, ema=self.ema,
                            iteration=done, rng=rng, extra=extra)

    def _metadata(self, done: int) -> dict[str, str]:
        """The task's metadata plus the iteration."""
        return {**self.task.metadata(), "iteration": json.dumps(done)}

    def _log_train(self, done: int, means: dict[str, float], seconds: float) -> None:
        """One ``train`` line in ``metrics.jsonl`` (rank 0)."""
        if self.metrics is None:
            return
        record = {"type": "train", "iteration": done, **means, "images_per_s": self.solver.batch_size / seconds,
                  "time": seconds, "elapsed": time.perf_counter() - self.progress.started}
        self._record(record)

    def _window_warnings(self, done: int, rows: list[dict[str, float]]) -> None:
        """Rank 0 shows what the task finds wrong with a logging window (``task.window_warnings(rows)``, optional)."""
        if self.rank == 0 and hasattr(self.task, "window_warnings"):
            for text in self.task.window_warnings(rows):
                self.progress.message(f"msad: warning (iteration {done}): {text}")

    def _record(self, record: dict[str, Any]) -> None:
        """One ``metrics.jsonl`` record (rank 0), mirrored to TensorBoard when on."""
        self.metrics.write(record)
        if self.tensorboard is not None:
            self.tensorboard.write(record)

    def _preview(self, model: nn.Module, done: int) -> None:
        """The task's predicted images (``task.preview(model)``) to TensorBoard; a failure is reported, never fatal."""
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                self.tensorboard.add_images(self.task.preview(model), done)
        except Exception as err:  # noqa: BLE001 - a preview must not stop the run
            self._say(f"could not draw the TensorBoard preview: {err}")
        finally:
            model.train(was_training)

    def _plot(self) -> None:
        """``curves.png`` from ``metrics.jsonl``; a plotting failure is reported, never fatal."""
        try:
            plot_curves(read_metrics(self.output / "metrics.jsonl"), self.output / "curves.png", title=str(self.output))
        except Exception as err:  # noqa: BLE001 - the run itself succeeded
            self._say(f"could not draw curves.png: {err}")

    def _forget_failed_start(self) -> None:
        """After a fresh start failed before its first iteration, remove what it wrote (rank 0).

        The files of a run that never trained (``metrics.jsonl``, ``environment.json``, the recipe…) would
        otherwise make the same command refuse the directory; a resumed run or one that trained keeps its files.
        """
        if self.rank != 0 or self.resuming or self._iterations_done:
            return
        forget_failed_start(self.output, self._written, created=self._created_output)

    def _say(self, text: str) -> None:
        """A one-line message from rank 0."""
        if comm.get_rank() == 0:
            self.echo(text)


def _next_batch(loader: Iterator[Any], iteration: int) -> Any:
    """The next batch, or a clear error when the loader ran dry."""
    try:
        return next(loader)
    except StopIteration:
        raise RuntimeError(f"the training loader ended before iteration {iteration}; it must not run dry") from None
