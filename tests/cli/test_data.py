"""``msad data synth`` (the COCO-shaped profile, usage errors) and ``msad data check`` (the problems table and exit 1,
exit 0 and the summary on clean data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msad.cli.main import main


def _run(argv: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as excinfo:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return (excinfo.value.code or 0), out, err


def test_coco_profile_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "coco"
    code, out, err = _run(["data", "synth", root, "--profile", "coco", "--train", "2", "--val", "1",
                           "--height", "192", "--width", "256"], capsys)
    assert code == 0, err
    assert "profile coco" in " ".join(out.split()) and "192×256" in out
    data = json.loads((root / "annotations" / "train.json").read_text())
    assert len(data["categories"]) == 10 and data["images"][0]["height"] == 192


@pytest.mark.parametrize("argv", [["--profile", "lvis"], ["--height", "64"]])
def test_bad_profile_or_half_a_size_is_a_usage_error(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["data", "synth", tmp_path / "x", "--train", "1", "--val", "0", *argv], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert not (tmp_path / "x").exists()  # nothing written


def _recipe_file(recipe, tmp_path: Path) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(recipe.dump_toml(), encoding="utf-8")
    return path


def test_clean_data_exits_0_with_what_the_run_sees(
    synth_dataset: Path, tiny_recipe_for, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(["data", "check", _recipe_file(tiny_recipe_for(synth_dataset), tmp_path)], capsys)
    assert code == 0, err
    assert "what the run will see" in out and "no problems found" in out and "16 (16)" in out


def test_problems_are_one_table_and_exit_1(
    broken_dataset: tuple[Path, dict[str, str]], tiny_recipe_for, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, planted = broken_dataset
    code, out, err = _run(["data", "check", _recipe_file(tiny_recipe_for(root), tmp_path), "--limit", "3"], capsys)
    assert code == 1 and "Traceback" not in out + err
    assert "problems (5)" in out and "… and 2 more" in out
    assert planted["truncated"] in out and planted["wrong size"] not in out  # listed in kind order, 3 shown
    lines = [line for line in err.splitlines() if line.startswith("msad:")]  # (off a terminal, progress lines too)
    assert len(lines) == 1 and lines[0].startswith("msad: error:")
    assert "5 problem(s) (1 missing, 1 unreadable, 1 truncated, 1 wrong size, 1 bad box)" in lines[0]
    assert 'data.on_bad_image = "skip"' in lines[0] and 'data.on_bad_annotation = "drop"' in lines[0]
