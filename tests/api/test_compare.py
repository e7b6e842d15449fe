"""``api.compare`` / ``msad compare``: weights side by side with AP, capacity and measured images/s."""

from __future__ import annotations

import json
import sys

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


# ---------------------------------------------------------------- #23: every file checked before the first evaluation
def _bad_copy(kind: str, good, tmp_path):
    """A weights file of ``kind`` that ``compare`` must refuse (``good``: a trained run to derive it from)."""
    import torch

    from msad.serialization import load_weights, save_weights

    path = tmp_path / f"{kind}.safetensors"
    state, meta = load_weights(good.weights)
    first_float = next(k for k, v in state.items() if v.is_floating_point())
    if kind == "missing":
        return path
    if kind == "pickle":
        torch.save(state, path)
    elif kind == "backbone":
        save_weights(path, state, {**meta, "role": "backbone"})
    elif kind == "onnx":
        path.write_bytes(b"\x08\x09\x12\x07pytorch\x3a\x02\x0a\x00")
    elif kind == "nan":
        save_weights(path, {**state, first_float: torch.full_like(state[first_float], float("nan"))}, meta)
    elif kind == "int32":
        save_weights(path, {**state, first_float: state[first_float].to(torch.int32)}, meta)
    return path


@pytest.mark.parametrize(("kind", "words"), [
    ("missing", "checkpoint not found"),
    ("pickle", "looks like a PyTorch pickle"),
    ("backbone", "a backbone file, not detector weights"),
    ("onnx", "this is an ONNX file"),
    ("nan", "holds NaN or infinite values"),
    ("int32", "wrong kind of number (e.g. "),
])
def test_a_bad_second_file_is_refused_before_the_first_is_evaluated(
    kind: str, words: str, trained_baseline: api.TrainResult, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msad.errors import CheckpointError

    def evaluated(*args, **kwargs):
        raise AssertionError("the first file was evaluated before the second was checked")

    monkeypatch.setattr(sys.modules["msad.api.compare"], "evaluate", evaluated)
    bad = _bad_copy(kind, trained_baseline, tmp_path)
    with pytest.raises(CheckpointError) as info:
        compare([trained_baseline.weights, bad])
    assert str(bad) in str(info.value) and words in str(info.value) and "\n" not in str(info.value)


def test_cli_prints_no_speed_for_refused_weights(trained_baseline: api.TrainResult, tmp_path, capsys) -> None:
    bad = _bad_copy("nan", trained_baseline, tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["compare", str(trained_baseline.weights), str(bad)])
    out, err = capsys.readouterr()
    assert done.value.code == 1 and "images/s" not in out and len(err.strip().splitlines()) == 1
