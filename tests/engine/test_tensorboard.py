"""TensorBoard events mirror metrics.jsonl (read back with the tensorboard package's own reader)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from msad.engine import Trainer
from msad.engine.metrics import read_metrics
from msad.engine.tensorboard import TENSORBOARD_HINT, TensorBoardWriter, require_tensorboard
from msad.errors import MissingDependencyError

pytest.importorskip("tensorboard", reason="the msad[tensorboard] extra is not installed")
import toytask  # noqa: E402  (tests/engine is on sys.path)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_events(log_dir) -> EventAccumulator:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def scalars(events: EventAccumulator) -> dict[str, list[tuple[int, float]]]:
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_writer_mirrors_records_and_images(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    writer.write({"type": "train", "iteration": 2, "total_loss": 1.5, "lr": 0.01, "flag": True})
    writer.write({"type": "eval", "iteration": 4, "AP": 12.5, "APl": float("nan")})
    writer.add_images({"image_1": np.full((8, 10, 3), 200, dtype=np.uint8)}, step=4)
    writer.close()
    events = read_events(tmp_path)
    assert scalars(events) == {"train/total_loss": [(2, 1.5)], "train/lr": [(2, pytest.approx(0.01))],
                               "eval/AP": [(4, 12.5)]}
    (image,) = events.Images("predictions/image_1")
    assert image.step == 4 and (image.width, image.height) == (10, 8)


def test_trainer_writes_the_same_scalars_as_metrics_jsonl(tmp_path):
    solver, run = toytask.settings(tmp_path, iters=8)
    run = type(run)(**{**run.__dict__, "tensorboard": True})
    Trainer(toytask.ToyTask(), solver=solver, run=run, make_train_loader=toytask.make_loader(3, solver.batch_size),
            echo=lambda _: None).fit()
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in read_metrics(tmp_path / "metrics.jsonl"):
        for key, value in record.items():
            if key not in ("type", "iteration") and isinstance(value, float | int) and math.isfinite(value):
                expected.setdefault(f"{record['type']}/{key}", []).append((record["iteration"], value))
    got = scalars(read_events(tmp_path / "tensorboard"))
    assert got.keys() == expected.keys() and {"train/total_loss", "eval/AP"} <= got.keys()
    for tag, points in expected.items():
        assert [step for step, _ in got[tag]] == [step for step, _ in points]
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6)


def test_missing_extra_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    with pytest.raises(MissingDependencyError) as info:
        require_tensorboard()
    assert str(info.value) == TENSORBOARD_HINT and "\n" not in TENSORBOARD_HINT and "msad[tensorboard]" in TENSORBOARD_HINT
    solver, run = toytask.settings(tmp_path / "run")
    run = type(run)(**{**run.__dict__, "tensorboard": True})
    with pytest.raises(MissingDependencyError):
        Trainer(toytask.ToyTask(), solver=solver, run=run, make_train_loader=toytask.make_loader(3, 8),
                echo=lambda _: None).fit()
    assert not (tmp_path / "run").exists()
