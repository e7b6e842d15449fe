"""Clear words through the ``msad`` command (issue 13): exit codes and the one line each situation prints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from msad.cli.main import main

SHORT = ["--set", "solver.iters=4", "--set", "solver.steps=[]", "--set", "run.checkpoint_period=2"]


def run(argv: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)`` → ``(exit code, stdout, stderr)``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return (0 if info.value.code is None else info.value.code), out, err


def fails(argv: list, capsys: pytest.CaptureFixture[str], code: int, *fragments: str) -> str:
    """Run ``argv``; expect exit ``code`` and one ``msad: error:`` line holding every fragment."""
    got, out, err = run(argv, capsys)
    assert got == code, f"exit {got}, expected {code}: {err!r}"
    assert "Traceback" not in out + err and "internal error" not in err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("msad: warning")]
    assert len(lines) == 1 and lines[0].startswith("msad: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def test_a_binary_recipe_exits_3_naming_the_file(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "model.toml"
    recipe.write_bytes(b"\x80\x04\x95\x00\xff\xfe binary")
    fails(["recipe", "validate", recipe], capsys, 3, str(recipe), "not a TOML text file")
    fails(["train", recipe], capsys, 3, str(recipe))


def test_a_set_value_error_names_the_set(tiny_recipe_file: Path, capsys) -> None:
    line = fails(["recipe", "validate", tiny_recipe_file, "--set", "solver.lr=inf"], capsys, 3, "--set solver.lr=inf", "finite")
    assert str(tiny_recipe_file) not in line


def test_resume_and_force_together_is_a_usage_error(tiny_recipe_file: Path, tmp_path: Path, capsys) -> None:
    fails(["train", tiny_recipe_file, "-o", tmp_path / "run", "--resume", "--force"], capsys, 2, "--resume and --force")
    assert not (tmp_path / "run").exists()


def test_more_cpu_ranks_than_cores_is_refused_at_once(tiny_recipe_file: Path, tmp_path: Path, capsys) -> None:
    too_many = (os.cpu_count() or 1) + 1
    fails(["train", tiny_recipe_file, "-o", tmp_path / "run", "--gpus", too_many], capsys, 2,
          f"--gpus {too_many}", "CPU cores")
    assert not (tmp_path / "run").exists()


def test_eval_json_into_a_directory_is_refused_before_evaluating(trained_teacher, tiny_recipe_file: Path, tmp_path: Path, capsys) -> None:
    fails(["eval", tiny_recipe_file, "-w", trained_teacher.weights, "--json", tmp_path], capsys, 2, "--json", "is a directory")


def test_ctrl_c_exits_130_saying_where_the_checkpoint_is(tiny_recipe_file: Path, tmp_path: Path, capsys, interrupt_training_at) -> None:
    interrupt_training_at(3)
    out = tmp_path / "run"
    fails(["train", tiny_recipe_file, "-o", out, *SHORT], capsys, 130,
          "interrupted", f"{out / 'last.safetensors'} (iteration 2)", "--resume")


def test_a_failing_rank_of_gpus_2_prints_its_own_one_line(synth_dataset: Path, tiny_recipe_file: Path, tmp_path: Path, capsys) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_dataset, data)
    for image in (data / "train").glob("*.png"):
        image.write_bytes(b"garbage")
    sets = [f'data.{k}="{data / v}"' for k, v in (("train_images", "train"), ("train_annotations", "annotations/train.json"),
                                                 ("val_images", "val"), ("val_annotations", "annotations/val.json"))]
    argv = ["train", tiny_recipe_file, "-o", tmp_path / "run", "--gpus", 2, *[a for s in sets for a in ("--set", s)]]
    line = fails(argv, capsys, 1, "cannot read image", "not a recognised image file")
    assert len(line) < 300
    assert not (tmp_path / "run").exists()
