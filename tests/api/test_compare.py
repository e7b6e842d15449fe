"""``api.compare`` / ``msad compare``: weights side by side with AP, capacity and measured images/s."""

from __future__ import annotations

import json
import pytest

from msad import api
from msad.api.compare import compare
from msad.cli.main import main
from msad.errors import UsageError

@pytest.fixture(scope="module")
def rows(trained_baseline: api.TrainResult, trained_student: api.TrainResult, trained_teacher: api.TrainResult,
         tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("compare") / "rows.json"
    weights = [trained_baseline.weights, trained_student.weights, trained_teacher.weights]
    return compare(weights, timing_images=4, batch_size=2, json_out=out), out


def test_rows_name_size_and_time_each_model(rows) -> None:
    result, _ = rows
    assert [r.name for r in result] == ["FCOS baseline, HR", "MSAD student", "MSAD teacher"]
    assert [r.input for r in result] == ["HR 128×160", "LR 64×80", "HR+LR 128×160"]
    assert all(set(api.METRICS) <= set(r.metrics) for r in result)
    assert all(r.images_per_s > 0 and r.device == "cpu" for r in result)


def test_capacity_is_the_papers_column(rows) -> None:
    baseline, student, teacher = (r.capacity for r in rows[0])
    assert student == pytest.approx(baseline / 4, rel=0.02)  # the ×½ input: a quarter of the backbone MACs
    assert teacher == pytest.approx(baseline + student)  # HR + LR passes
    assert baseline == pytest.approx(0.25**2, rel=0.05)  # width 0.25 against width 1.0


def test_json_is_strict(rows) -> None:
    _, path = rows
    text = path.read_text()
    assert "NaN" not in text
    assert [row["role"] for row in json.loads(text)] == ["baseline", "student", "teacher"]


def test_names_must_match_the_files(trained_baseline: api.TrainResult) -> None:
    with pytest.raises(UsageError, match="2 names for 1 weights"):
        compare([trained_baseline.weights], names=["a", "b"])


def test_cli_prints_one_table(trained_baseline: api.TrainResult, trained_student: api.TrainResult,
                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["compare", str(trained_baseline.weights), str(trained_student.weights), "--name", "HR baseline",
              "--name", "student", "--timing-images", "2", "--batch-size", "2"])
    out = capsys.readouterr().out
    assert info.value.code in (0, None)
    lines = [line for line in out.splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in lines] == ["HR baseline", "student"]
    assert "nan" not in out.lower() and "images/s" in out
