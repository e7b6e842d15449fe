"""The trainer on a toy task: exact resume (also after SIGKILL), divergence, output-dir safety, outputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import toytask
from PIL import Image

from msad.engine import RunExistsError, Trainer, TrainingDiverged
from msad.engine.metrics import read_metrics
from msad.errors import RecipeError
from msad.serialization import load_weights


def fit(output: Path, task: toytask.ToyTask | None = None, *, resume=False, force=False, **kwargs) -> Trainer:
    task = task or toytask.ToyTask()
    solver, run = toytask.settings(output, **kwargs)
    trainer = Trainer(task, solver=solver, run=run, make_train_loader=toytask.make_loader(3, solver.batch_size),
                      resume=resume, force=force, echo=lambda _: None)
    trainer.fit()
    return trainer


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_run_writes_checkpoints_metrics_and_plots(tmp_path):
    trainer = fit(tmp_path, ema=0.5, iters=12, checkpoint_period=4)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best.safetensors", "curves.png", "environment.json", "last.safetensors", "metrics.jsonl",
                     "model_0000008.safetensors", "model_0000012.safetensors", "state-0000012.safetensors", "state.json"]
    weights, meta = load_weights(tmp_path / "last.safetensors")
    assert meta["role"] == "toy" and meta["iteration"] == "12"
    assert_same_state(weights, trainer.ema.state_dict())  # EMA weights are the saved model weights
    assert not torch.equal(weights["weight"], trainer.model.weight.detach())
    records = read_metrics(tmp_path / "metrics.jsonl")
    train = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["iteration"] for r in train] == list(range(2, 13, 2))
    assert [r["iteration"] for r in evals] == [4, 8, 12]
    assert train[0]["lr"] == pytest.approx(0.05 * (0.1 * (1 - 1 / 3) + 1 / 3))  # lr of iteration 1 (warm-up)
    assert train[-1]["lr"] == pytest.approx(0.005) and train[-1]["total_loss"] > 0 and train[-1]["images_per_s"] > 0
    assert train[0]["total_loss"] == pytest.approx(train[0]["loss_mse"] + train[0]["loss_l2"])
    best = max(evals, key=lambda r: r["AP"])
    assert load_weights(tmp_path / "best.safetensors")[1]["iteration"] == str(best["iteration"])
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["world_size"] == 1 and env["device"] == "cpu" and env["torch"] == torch.__version__
    with Image.open(tmp_path / "curves.png") as image:
        assert image.size == (1120, 420)  # two panels (losses, evaluation) of msad.plots.curves_figure
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 4  # something was drawn


def test_resume_continues_exactly(tmp_path):
    full = fit(tmp_path / "full", toytask.ToyTask(noise=0.5), iters=12)
    part = tmp_path / "resumed"
    with pytest.raises(toytask.SimulatedCrash):  # same settings, stopped during iteration 9 (state saved at 8)
        fit(part, toytask.ToyTask(noise=0.5, crash_at=9), iters=12, checkpoint_period=4)
    assert json.loads((part / "state.json").read_text())["iteration"] == 8
    messages = []
    solver, run = toytask.settings(part, iters=12)
    resumed = Trainer(toytask.ToyTask(noise=0.5), solver=solver, run=run,
                      make_train_loader=toytask.make_loader(3, 8), resume=True, echo=messages.append)
    resumed.fit()
    assert any("resumed" in m and "iteration 8/12" in m for m in messages), messages
    assert_same_state(full.model.state_dict(), resumed.model.state_dict())
    p, q = full.model.weight, resumed.model.weight
    assert torch.equal(full.optimizer.state[p]["momentum_buffer"], resumed.optimizer.state[q]["momentum_buffer"])
    assert (part / "last.safetensors").read_bytes() != b"" and torch.equal(
        load_weights(part / "last.safetensors")[0]["weight"], load_weights(tmp_path / "full" / "last.safetensors")[0]["weight"])


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    cmd = [sys.executable, toytask.__file__, str(out), "--iters", "40", "--checkpoint-period", "5",
           "--sleep", "0.1", "--noise", "0.5", "--ema", "0.5"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            state = out / "state.json"
            if state.exists() and json.loads(state.read_text())["iteration"] >= 10:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads((out / "state.json").read_text())["iteration"]
    assert 10 <= killed_at < 40
    assert (out / f"model_{killed_at:07d}.safetensors").exists()  # the periodic checkpoint of that state

    resumed = toytask.train(str(out), 40, 0.5, 0.5, 0.0, 5, resume=True)
    uninterrupted = toytask.train(str(tmp_path / "full"), 40, 0.5, 0.5, 0.0, 5)
    assert_same_state(resumed, uninterrupted)
    final, meta = load_weights(out / "last.safetensors")
    assert meta["iteration"] == "40"
    assert_same_state(final, load_weights(tmp_path / "full" / "last.safetensors")[0])
    assert (out / "last.safetensors").read_bytes() == (tmp_path / "full" / "last.safetensors").read_bytes()
    iterations = [r["iteration"] for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 40  # no duplicated lines after resume


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    with pytest.raises(toytask.SimulatedCrash):  # the same run stopped right after its iteration-8 checkpoint
        fit(tmp_path / "ref", toytask.ToyTask(crash_at=8), iters=12, checkpoint_period=4)
    with pytest.raises(TrainingDiverged, match=r"iteration 10: non-finite loss_mse, total_loss") as info:
        fit(tmp_path / "run", toytask.ToyTask(nan_at=10), iters=12, checkpoint_period=4)
    assert info.value.iteration == 10 and info.value.checkpoint == str(tmp_path / "run" / "last.safetensors")
    assert "loss_l2=" in str(info.value) and "last.safetensors is left untouched" in str(info.value)
    for name in ("last.safetensors", "model_0000008.safetensors", "best.safetensors", "state-0000008.safetensors"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    weights, meta = load_weights(tmp_path / "run" / "last.safetensors")
    assert meta["iteration"] == "8" and torch.isfinite(weights["weight"]).all()
    assert json.loads((tmp_path / "run" / "state.json").read_text())["iteration"] == 8
    assert not (tmp_path / "run" / "curves.png").exists()


class ScriptedAP(toytask.ToyTask):
    """A toy task whose evaluations return the scripted ``AP`` values in turn."""

    def __init__(self, values):
        super().__init__()
        self.values = list(values)

    def evaluate(self, model):
        return {"AP": self.values.pop(0)}


def test_keep_cap_and_best_by_metric(tmp_path):
    # evaluations at 4, 8, 12 (AP 1, 5, 3) and 16 (NaN: never best); checkpoints every 2, keep 2
    solver, run = toytask.settings(tmp_path, iters=16, checkpoint_period=2, eval_period=4)
    trainer = Trainer(ScriptedAP([1.0, 5.0, 3.0, float("nan")]), solver=solver, run=run,
                      make_train_loader=toytask.make_loader(3, 8), echo=lambda _: None)
    trainer.fit()
    assert sorted(p.name for p in tmp_path.glob("model_*")) == ["model_0000014.safetensors", "model_0000016.safetensors"]
    assert trainer.checkpoints == ["model_0000014.safetensors", "model_0000016.safetensors"]
    assert load_weights(tmp_path / "model_0000014.safetensors")[1]["iteration"] == "14"
    assert load_weights(tmp_path / "best.safetensors")[1]["iteration"] == "8" and trainer.best == 5.0
    extra = json.loads((tmp_path / "state.json").read_text())["extra"]
    assert extra["best"] == 5.0 and extra["checkpoints"] == trainer.checkpoints

    solver, run = toytask.settings(tmp_path / "nobest", iters=4, checkpoint_period=2)
    run = type(run)(**{**run.__dict__, "best_metric": None, "keep_checkpoints": 0})
    Trainer(toytask.ToyTask(), solver=solver, run=run, make_train_loader=toytask.make_loader(3, 8),
            echo=lambda _: None).fit()
    names = {p.name for p in (tmp_path / "nobest").iterdir()}
    assert "best.safetensors" not in names and not any(n.startswith("model_") for n in names)
    assert "last.safetensors" in names


def test_keep_cap_survives_resume(tmp_path):
    with pytest.raises(toytask.SimulatedCrash):
        fit(tmp_path, toytask.ToyTask(crash_at=9), iters=12, checkpoint_period=2)
    assert sorted(p.name for p in tmp_path.glob("model_*")) == ["model_0000006.safetensors", "model_0000008.safetensors"]
    fit(tmp_path, iters=12, checkpoint_period=2, resume=True)
    assert sorted(p.name for p in tmp_path.glob("model_*")) == ["model_0000010.safetensors", "model_0000012.safetensors"]


def test_refuses_a_directory_holding_a_run(tmp_path):
    fit(tmp_path, iters=4)
    with pytest.raises(RunExistsError, match=r"already holds a run .*--resume.*--force"):
        fit(tmp_path, iters=4)
    before = (tmp_path / "last.safetensors").read_bytes()
    fit(tmp_path, iters=4, force=True)  # same seed: same result, files overwritten in place
    assert (tmp_path / "last.safetensors").read_bytes() == before
    fit(tmp_path, iters=6, force=True)  # a different run really replaces the files
    assert load_weights(tmp_path / "last.safetensors")[1]["iteration"] == "6"
    assert json.loads((tmp_path / "state.json").read_text())["iteration"] == 6
    assert max(r["iteration"] for r in read_metrics(tmp_path / "metrics.jsonl")) == 6
    (tmp_path / "state.json").unlink()
    with pytest.raises(RunExistsError, match="cannot resume"):
        fit(tmp_path, iters=4, resume=True)


def test_unrelated_files_and_resume_of_empty_dir_start_fresh(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    fit(tmp_path / "sub", iters=2, resume=True)
    fit(tmp_path, iters=2)
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "last.safetensors").exists()


def test_fp16_refused_on_cpu(tmp_path):
    solver, run = toytask.settings(tmp_path, iters=2)
    solver = type(solver)(**{**solver.__dict__, "amp": "fp16"})
    trainer = Trainer(toytask.ToyTask(), solver=solver, run=run, make_train_loader=toytask.make_loader(3, 8))
    with pytest.raises(RecipeError, match="fp16.*needs CUDA"):
        trainer.fit()


def test_bf16_autocast_on_cpu_trains(tmp_path):
    solver, run = toytask.settings(tmp_path, iters=4)
    solver = type(solver)(**{**solver.__dict__, "amp": "bf16"})
    task = toytask.ToyTask()
    start = task.model.weight.detach().clone()
    Trainer(task, solver=solver, run=run, make_train_loader=toytask.make_loader(3, 8), echo=lambda _: None).fit()
    assert not torch.equal(start, task.model.weight.detach())


def test_evaluation_sees_the_ema_weights(tmp_path):
    task = toytask.ToyTask()
    evaluated = []
    evaluate = task.evaluate

    def recording(model):
        evaluated.append({k: v.clone() for k, v in model.state_dict().items()})
        return evaluate(model)

    task.evaluate = recording
    trainer = fit(tmp_path, task, ema=0.5, iters=4, eval_period=0)
    assert len(evaluated) == 1
    assert_same_state(evaluated[0], trainer.ema.state_dict())
    assert not torch.equal(evaluated[0]["weight"], trainer.model.weight.detach())  # not the raw weights
