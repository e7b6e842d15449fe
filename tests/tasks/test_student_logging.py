"""The student logs its distillation term before and after the ramp, so curves.png can show both."""

from __future__ import annotations

import json

import pytest

from msad import api


def test_metrics_jsonl_holds_kd_raw_and_its_weight(trained_student: api.TrainResult) -> None:
    rows = [json.loads(line) for line in (trained_student.output / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["type"] == "train"]
    # log_period 2, ramp over 500 iterations: the mean weight of iterations {0, 1} and {2, 3}
    assert [r["kd_weight"] for r in train] == pytest.approx([0.5 / 500, 2.5 / 500])
    for row in train:
        assert row["kd_raw"] > 0 and row["loss_kd"] < row["kd_raw"]
    assert (trained_student.output / "curves.png").is_file()
