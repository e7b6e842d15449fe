"""Nothing lost, nothing silent: training runs that fail, resume, move or repeat (issue 13, issue 11 part 4).

Every run here is the tiny baseline on a private copy of the session dataset: 2 iterations of batch 4 at
128×160 (about 3 s on two CPU cores).
"""

from __future__ import annotations

import errno
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from msad import api
from msad.config import Recipe, load_recipe
from msad.engine.trainer import Trainer
from msad.errors import DataError, Interrupted, RecipeError, ResourceError, RunStateError, UsageError

TINY_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny.toml"
SHORT = ["solver.iters=2", "solver.steps=[]", "run.log_period=1"]
_OVERRIDES: list[str] = []


@pytest.fixture
def data(synth_dataset: Path, tiny_overrides: list[str], tmp_path: Path) -> Path:
    """A private, writable copy of the session dataset."""
    root = tmp_path / "data"
    shutil.copytree(synth_dataset, root)
    _OVERRIDES[:] = [item.replace(str(synth_dataset), str(root)) for item in tiny_overrides]
    return root


def recipe_on(root: Path, *sets: str) -> Recipe:
    """The tiny recipe on the copy at ``root`` (made by the ``data`` fixture), 2 iterations, plus ``sets``."""
    assert any(str(root) in item for item in _OVERRIDES)
    return load_recipe(TINY_RECIPE, overrides=[*_OVERRIDES, *SHORT, *sets])


def strict_json(text: str) -> object:
    """``json.loads`` that refuses NaN and Infinity, as JavaScript's JSON.parse does."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def corrupt(path: Path) -> bytes:
    """Overwrite an image with garbage; return its old bytes."""
    old = path.read_bytes()
    path.write_bytes(b"not an image")
    return old


# ---------------------------------------------------------------- the final evaluation never costs the run
def test_a_failed_final_evaluation_keeps_weights_and_state(data: Path, tmp_path: Path) -> None:
    val_image = sorted((data / "val").glob("*.png"))[0]
    good = corrupt(val_image)  # exists (passes the up-front check) but cannot be decoded: evaluation fails
    out = tmp_path / "run"
    with pytest.raises(DataError, match=val_image.name):
        api.train(recipe_on(data), output=out)
    assert (out / "last.safetensors").is_file()
    assert json.loads((out / "state.json").read_text())["iteration"] == 2
    val_image.write_bytes(good)
    result = api.train(recipe_on(data), output=out, resume=True)  # only the evaluation runs again
    assert set(result.metrics) >= {"AP", "APl"}


def test_val_set_problems_are_found_before_the_first_iteration(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    missing = sorted((data / "val").glob("*.png"))[1]
    kept = missing.read_bytes()
    missing.unlink()
    with pytest.raises(DataError, match=rf"1 of 8 images listed in .*val.json.* are missing .*{missing.name}"):
        api.train(recipe_on(data), output=out)
    assert not out.exists()
    missing.write_bytes(kept)
    ann = json.loads((data / "annotations" / "val.json").read_text())
    ann["categories"].append({"id": 999, "name": "zebra"})
    (data / "annotations" / "val.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match="zebra"):
        api.train(recipe_on(data), output=out)
    assert not out.exists()


def test_a_start_that_fails_before_its_first_iteration_can_be_rerun_as_typed(data: Path, tmp_path: Path, capsys) -> None:
    images = sorted((data / "train").glob("*.png"))
    good = [corrupt(image) for image in images]  # whichever the first batch samples cannot be decoded
    out = tmp_path / "run"
    with pytest.raises(DataError, match="cannot read image"):
        api.train(recipe_on(data), output=out)
    assert not out.exists(), sorted(out.iterdir())
    capsys.readouterr()
    with pytest.raises(DataError, match="cannot read image"):
        api.train(recipe_on(data), output=out, resume=True)  # nothing to resume: a fresh start, failing again
    assert "nothing to resume" in capsys.readouterr().out
    for image, content in zip(images, good, strict=True):
        image.write_bytes(content)
    result = api.train(recipe_on(data), output=out)  # the same command, no --force needed
    assert result.weights.is_file()


# ---------------------------------------------------------------- resume, force and the user's files
def test_resume_refuses_a_recipe_that_differs_in_what_matters(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = api.train(recipe_on(data), output=out)
    # the state was written before the final evaluation; the best metric that evaluation found still reaches it
    assert json.loads((out / "state.json").read_text())["extra"]["best"] == result.metrics["AP"]
    with pytest.raises(RunStateError, match=r"differs from the run's in .*model\.backbone\.options\.width.*solver\.lr"):
        api.train(recipe_on(data, "solver.lr=0.5", "model.backbone.width=0.5"), output=out, resume=True)
    with pytest.raises(UsageError, match="--resume and --force"):
        api.train(recipe_on(data), output=out, resume=True, force=True)
    api.train(recipe_on(data, "data.num_workers=1"), output=out, resume=True)  # loading parallelism does not matter


def test_a_killed_force_restart_is_never_resumed_as_the_old_run(data: Path, tmp_path: Path, interrupt_training_at) -> None:
    out = tmp_path / "run"
    api.train(recipe_on(data), output=out)  # the old run, finished at iteration 2
    interrupt_training_at(1)
    with pytest.raises(Interrupted):
        api.train(recipe_on(data, "solver.lr=0.01"), output=out, force=True)  # killed after its first iteration
    with pytest.raises(RunStateError, match="no training state"):
        api.train(recipe_on(data, "solver.lr=0.01"), output=out, resume=True)


def test_a_users_recipe_toml_is_never_overwritten(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "recipe.toml").write_text("# my own recipe\n")
    for force in (False, True):
        with pytest.raises(RunStateError, match="recipe.toml is not from an msad run"):
            api.train(recipe_on(data), output=out, force=force)
    assert (out / "recipe.toml").read_text() == "# my own recipe\n"


def test_synth_never_writes_over_a_users_files_without_force(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "train").mkdir(parents=True)
    mine = root / "train" / "000001.png"
    mine.write_bytes(b"my holiday picture")
    with pytest.raises(RunStateError, match=r"photos is not empty \(train\); .* pass --force"):
        api.synth_data(root, train=2, val=1, image_size=(64, 64))
    assert mine.read_bytes() == b"my holiday picture" and sorted(p.name for p in root.rglob("*")) == ["000001.png", "train"]
    api.synth_data(root, train=2, val=1, image_size=(64, 64), force=True)  # asked for: written
    assert (root / "annotations" / "train.json").is_file()


def test_stale_temporaries_of_a_killed_write_are_removed_at_the_next_start(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    api.train(recipe_on(data), output=out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".state-0000002.safetensors.{int(dead.stdout)}.0badc0de.tmp"
    stale.write_bytes(b"\0" * 1024)
    api.train(recipe_on(data), output=out, resume=True)  # a finished run: only its evaluation runs again
    assert not stale.exists()


# ---------------------------------------------------------------- self-contained checkpoints
def test_a_checkpoint_never_opens_its_initialisation_file(data: Path, tmp_path: Path) -> None:
    from msad.models.backbones.slimmable_checkpoint import save_backbone
    from msad.models.backbones.slimmable_resnet import build_slimmable_resnet

    init = tmp_path / "init.safetensors"
    backbone = build_slimmable_resnet(width=0.25)
    save_backbone(init, backbone, widths=backbone.widths)
    recipe = recipe_on(data, f'model.backbone.weights="{init}"')
    result = api.train(recipe, output=tmp_path / "run")
    init.unlink()  # the file moved away
    report = api.evaluate(recipe_on(data), result.weights)
    assert report["metrics"].keys() >= {"AP"}
    model = api.load_model(api.read_checkpoint(result.weights))
    assert isinstance(model, torch.nn.Module)


# ---------------------------------------------------------------- reproducible
def test_three_identical_runs_give_identical_weights(data: Path, tmp_path: Path) -> None:
    recipe = recipe_on(data, "run.seed=7")
    weights = [load_file(api.train(recipe, output=tmp_path / f"run{i}").weights) for i in range(3)]
    assert weights[0].keys() == weights[1].keys() == weights[2].keys()
    for other in weights[1:]:
        different = [k for k in weights[0] if not torch.equal(weights[0][k], other[k])]
        assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    other_seed = load_file(api.train(recipe_on(data, "run.seed=8"), output=tmp_path / "seed8").weights)
    assert any(not torch.equal(weights[0][k], other_seed[k]) for k in weights[0])  # the seed does decide


# ---------------------------------------------------------------- silent wrong: boxes
def _poison_first_box(data: Path, bbox: list) -> None:
    path = data / "annotations" / "train.json"
    ann = json.loads(path.read_text())
    ann["annotations"][0]["bbox"] = bbox
    path.write_text(json.dumps(ann))  # json writes NaN / Infinity, as a careless exporter does


@pytest.mark.parametrize("bbox", [[1.0, 2.0, float("nan"), 5.0], [1.0, 2.0, float("inf"), 5.0], [10.0, 10.0, -3.0, 4.0]])
def test_bad_boxes_are_refused_or_dropped_with_a_count(data: Path, tmp_path: Path, bbox: list, capsys) -> None:
    _poison_first_box(data, bbox)
    with pytest.raises(DataError, match=r"1 of \d+ annotations in .*train.json.* have a NaN, infinite or negative-size bbox"):
        api.train(recipe_on(data), output=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    if math.isnan(bbox[2]):  # one training run is enough to show the drop mode
        capsys.readouterr()
        api.train(recipe_on(data, 'data.on_bad_annotation="drop"'), output=tmp_path / "dropped")
        assert "msad: warning: dropped 1 of" in capsys.readouterr().err


def test_a_training_set_without_annotations_is_refused(data: Path, tmp_path: Path) -> None:
    path = data / "annotations" / "train.json"
    ann = json.loads(path.read_text())
    ann["annotations"] = []
    path.write_text(json.dumps(ann))
    with pytest.raises(DataError, match="no .*annotations: there is nothing to train on"):
        api.train(recipe_on(data), output=tmp_path / "run")


def test_a_scale_that_shrinks_every_box_away_is_refused(data: Path, tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"data.scale = 1e-06: every box .* shrinks below 1 pixel"):
        api.train(recipe_on(data, "data.scale=1e-6"), output=tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the user's situations, in clear words
def test_ctrl_c_says_where_the_last_checkpoint_is(data: Path, tmp_path: Path, interrupt_training_at) -> None:
    interrupt_training_at(3)
    out = tmp_path / "run"
    with pytest.raises(Interrupted) as info:
        api.train(recipe_on(data, "solver.iters=5", "run.checkpoint_period=2"), output=out)
    assert info.value.exit_code == 130
    assert f"the last checkpoint is {out / 'last.safetensors'} (iteration 2)" in str(info.value)
    assert "--resume" in str(info.value)


def test_disk_full_is_the_users_situation(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("msad.engine.trainer.save_weights", full)
    with pytest.raises(ResourceError, match="no space left on the device .*last.safetensors.*; free disk space"):
        api.train(recipe_on(data), output=tmp_path / "run")


def test_disk_full_inside_safetensors_is_the_users_situation(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import SafetensorError

    def full(tensors, filename, metadata=None):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')

    monkeypatch.setattr("msad.serialization.save_file", full)
    with pytest.raises(ResourceError, match="training stopped: no space left on the device .*; free disk space"):
        api.train(recipe_on(data), output=tmp_path / "run")
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_a_read_only_output_is_the_users_situation(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("msad.engine.trainer.save_weights", denied)
    with pytest.raises(ResourceError, match=r"cannot write \(.*last.safetensors\): Permission denied; choose a writable --output"):
        api.train(recipe_on(data), output=tmp_path / "run")


def test_out_of_memory_is_the_users_situation(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(self, iteration, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "run_step", oom)
    with pytest.raises(ResourceError, match="ran out of memory; lower solver.batch_size"):
        api.train(recipe_on(data), output=tmp_path / "run")


def test_divergence_says_what_to_do(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from msad.tasks.detection import DetectionTask

    losses = DetectionTask.losses

    def nan_at_1(self, model, batch, iteration):
        out = losses(self, model, batch, iteration)
        return {k: v * float("nan") for k, v in out.items()} if iteration == 1 else out

    monkeypatch.setattr(DetectionTask, "losses", nan_at_1)
    with pytest.raises(ResourceError, match=r"training diverged at iteration 1: .*lower solver.lr"):
        api.train(recipe_on(data), output=tmp_path / "run")


# ---------------------------------------------------------------- honest outputs (issue 11 part 4)
def test_metrics_and_eval_json_are_strict_json(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = api.train(recipe_on(data), output=out)  # the synthetic val set has no large objects: APl undefined
    records = [strict_json(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] == "eval"]
    assert evals and evals[-1]["APl"] is None
    report_file = tmp_path / "eval.json"
    api.evaluate(recipe_on(data), result.weights, json_out=report_file)
    assert strict_json(report_file.read_text())["metrics"]["APl"] is None


def test_eval_json_output_is_checked_before_evaluating(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = api.train(recipe_on(data), output=tmp_path / "run")
    monkeypatch.setattr("msad.api.evaluation.launch", lambda *a, **k: pytest.fail("evaluated before checking --json"))
    with pytest.raises(UsageError, match="--json .* is a directory"):
        api.evaluate(recipe_on(data), result.weights, json_out=tmp_path)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UsageError, match="--json .*a_file is a file, not a folder"):
        api.evaluate(recipe_on(data), result.weights, json_out=tmp_path / "a_file" / "m.json")
