"""``run.tensorboard = true`` on a real detector: the metrics.jsonl scalars and predicted images at each evaluation."""

from __future__ import annotations

import pytest

from msad import api
from msad.config import Recipe

pytest.importorskip("tensorboard", reason="the msad[tensorboard] extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def test_baseline_run_logs_scalars_and_predicted_images(tiny_recipe: Recipe, tmp_path) -> None:
    recipe = tiny_recipe.model_copy(update={"run": tiny_recipe.run.model_copy(update={"tensorboard": True, "eval_period": 2})})
    api.train(recipe, output=tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/total_loss", "train/loss_cls", "eval/AP"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("eval/AP")] == [2, 4]
    previews = [t for t in tags["images"] if t.startswith("predictions/")]
    assert len(previews) == 4  # the first four validation images
    assert [e.step for e in events.Images(previews[0])] == [2, 4]
