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


# --- issue 23: no output lands on an input of the same command, on another output, or outside its folder ---

def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(Path(src).read_bytes())
    return dst


def test_eval_results_or_json_onto_the_weights_is_refused_and_the_weights_kept(
    trained_baseline, tiny_recipe_file: Path, tmp_path: Path, capsys
) -> None:
    weights = _copy(trained_baseline.weights, tmp_path / "w.safetensors")
    before = weights.read_bytes()
    for option in ("--results", "--json"):
        fails(["eval", tiny_recipe_file, "-w", weights, option, weights], capsys, 2,
              f"{option} {weights} would overwrite the input --weights")
    assert weights.read_bytes() == before


def test_eval_results_onto_the_annotations_is_refused(trained_baseline, tiny_recipe_file: Path, tmp_path: Path, capsys) -> None:
    import json as _json

    from msad.config import load_recipe

    annotations = _copy(load_recipe(tiny_recipe_file).data.val_annotations, tmp_path / "val.json")
    before = annotations.read_bytes()
    argv = ["eval", tiny_recipe_file, "-w", trained_baseline.weights, "--set", f"data.val_annotations={_json.dumps(str(annotations))}"]
    fails([*argv, "--results", annotations], capsys, 2, "would overwrite the input data.val_annotations")
    fails([*argv, "--results", tmp_path / "r.json", "--json", tmp_path / "r.json"], capsys, 2, "are the same file")
    fails([*argv, "--json", tiny_recipe_file], capsys, 2, "would overwrite the input the recipe")
    assert annotations.read_bytes() == before and not (tmp_path / "r.json").exists()


def test_compare_json_onto_a_weights_file_is_refused_before_evaluating(trained_baseline, tmp_path: Path, capsys) -> None:
    a = _copy(trained_baseline.weights, tmp_path / "a.safetensors")
    before = a.read_bytes()
    fails(["compare", trained_baseline.weights, a, "--json", a], capsys, 2, f"--json {a} would overwrite the input")
    assert a.read_bytes() == before


def test_export_onto_its_own_input_is_refused(trained_baseline, tmp_path: Path, capsys) -> None:
    weights = _copy(trained_baseline.weights, tmp_path / "w.onnx")  # a weights file named .onnx
    before = weights.read_bytes()
    fails(["export", weights, weights], capsys, 2, f"OUT {weights} would overwrite the input WEIGHTS {weights}; choose another OUT")
    assert weights.read_bytes() == before


def test_predict_never_writes_through_a_link_out_of_its_output(
    trained_baseline, synth_dataset: Path, tmp_path: Path, capsys
) -> None:
    images, out, elsewhere = tmp_path / "images", tmp_path / "out", tmp_path / "elsewhere"
    src = sorted((synth_dataset / "val").iterdir())
    for name, source in (("d1/a.png", src[0]), ("d2/b.png", src[1])):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        _copy(source, images / name)
    elsewhere.mkdir()
    (elsewhere / "a.png").write_bytes(b"the user's own file")
    out.mkdir()
    os.symlink(elsewhere, out / "d1")
    fails(["predict", images / "d1", images / "d2", "-w", trained_baseline.weights, "-o", out, "--device", "cpu"],
          capsys, 2, "outside the output folder", "d1")
    assert (elsewhere / "a.png").read_bytes() == b"the user's own file" and not (out / "predictions.json").exists()


def test_predict_never_writes_over_its_weights(trained_baseline, synth_dataset: Path, tmp_path: Path, capsys) -> None:
    src = sorted((synth_dataset / "val").iterdir())[0]
    image = _copy(src, tmp_path / "a.png")
    weights = _copy(trained_baseline.weights, tmp_path / "predictions.json")  # weights named like the results file
    fails(["predict", image, "-w", weights, "-o", tmp_path, "--force", "--runtime", "torch"], capsys, 2,
          "would overwrite the input --weights")


def test_data_synth_never_writes_through_a_link_out_of_its_folder(tmp_path: Path, capsys) -> None:
    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "annotations")
    fails(["data", "synth", root, "--train", "1", "--val", "1", "--force"], capsys, 2, "outside the output folder")
    assert not list(elsewhere.iterdir()) and not (root / "train").exists()


def test_a_second_training_into_a_running_directory_is_refused_and_the_first_finishes(
    tiny_recipe_file: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msad.engine.trainer import Trainer

    out, refusals = tmp_path / "run", []
    step = Trainer.run_step

    def run_step(self, iteration, batch):  # the second run starts while the first trains
        if iteration == 2 and not refusals:
            refusals.append(fails(["train", tiny_recipe_file, "-o", out, *SHORT], capsys, 1, f"{out} is in use by another msad run"))
        return step(self, iteration, batch)

    monkeypatch.setattr(Trainer, "run_step", run_step)
    code, stdout, err = run(["train", tiny_recipe_file, "-o", out, *SHORT], capsys)
    assert code == 0, err
    assert refusals and stdout.count("weights:") == 1 and (out / "last.safetensors").is_file()
    assert not (out / ".msad-run.lock").exists()
