"""``precision="bf16"`` through the API: evaluation and prediction run folded under bf16 autocast."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from msad import api
from msad.config import Recipe
from msad.errors import UsageError


def test_evaluate_in_bf16_reports_close_metrics(trained_baseline: api.TrainResult, tiny_recipe: Recipe) -> None:
    fp32 = api.evaluate(tiny_recipe, trained_baseline.weights)
    bf16 = api.evaluate(tiny_recipe, trained_baseline.weights, precision="bf16")
    assert bf16["precision"] == "bf16" and fp32["precision"] == "fp32"
    assert bf16["metrics"].keys() == fp32["metrics"].keys()
    assert math.isfinite(bf16["metrics"]["AP50"])
    assert abs(bf16["metrics"]["AP50"] - fp32["metrics"]["AP50"]) <= 1.0


def test_predict_in_bf16_and_unknown_precision(trained_student: api.TrainResult, synth_dataset: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for src in sorted((synth_dataset / "val").iterdir())[:2]:
        shutil.copy(src, images / src.name)
    fp32 = api.predict(trained_student.weights, [images], tmp_path / "fp32", score_threshold=0.2, device="cpu", draw=False)
    bf16 = api.predict(trained_student.weights, [images], tmp_path / "bf16", score_threshold=0.2, device="cpu", draw=False,
                       precision="bf16")
    best = {p["file_name"]: p["score"] for p in reversed(json.loads(fp32.predictions.read_text()))}
    got = {p["file_name"]: p["score"] for p in reversed(json.loads(bf16.predictions.read_text()))}
    assert got.keys() == best.keys() and best  # the first (best) detection of each image, in both precisions
    assert all(abs(got[name] - best[name]) <= 0.05 for name in best)
    with pytest.raises(UsageError, match="--precision must be one of"):
        api.predict(trained_student.weights, [images], tmp_path / "x", precision="fp16")
