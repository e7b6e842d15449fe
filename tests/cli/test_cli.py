"""The ``msad`` command: thin shells over the API, and one clear line for every bad input.

Success paths go through ``typer.testing.CliRunner`` or :func:`msad.cli.main.main`; error paths through
``main()`` (the CLI's error boundary), checking the exit code, a single ``msad: error: …`` line on stderr, no
traceback, and that nothing already on disk changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import msad
from msad import api
from msad.cli.main import app, main
from msad.config import Recipe, load_recipe

TINY_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny.toml"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)`` → ``(exit code, stdout, stderr)``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as excinfo:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    code = excinfo.value.code
    return (0 if code is None else code), out, err


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], code: int, *fragments: str) -> str:
    """Run ``argv``, expect exit ``code`` and one ``msad: error:`` line containing every fragment; return it."""
    got, out, err = run(argv, capsys)
    assert got == code, f"exit {got}, expected {code}; stderr: {err!r}"
    assert "Traceback" not in err + out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    line = lines[0]
    assert line.startswith("msad: error: ")
    assert "internal error" not in line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


# -- the root command --------------------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"msad {msad.__version__}"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["frobnicate"], capsys)
    assert code == 2
    assert "frobnicate" in err and "Traceback" not in err + out


@pytest.mark.parametrize("argv", [
    ["eval", "{recipe}", "-w", "x.safetensors", "--branch", "middle"],
    ["train", "{recipe}", "--gpus", "0"],
    ["flops", "--set", "model.backbone.width=0.5"],
    ["eval", "{recipe}"],  # --weights is required
    ["eval", "{recipe}", "-w", "x.safetensors", "--eval-backend", "detectron2"],
])
def test_bad_options_are_usage_errors(argv: list[str], tiny_recipe_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([a.replace("{recipe}", str(tiny_recipe_file)) for a in argv], capsys)
    assert code == 2 and "Traceback" not in err + out


# -- recipes and plugins ----------------------------------------------------------------------------------------


def test_recipe_show_reloads_to_an_equal_recipe(tiny_recipe_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["recipe", "show", str(tiny_recipe_file), "--set", "solver.lr=0.02", "--set", "distill.kd_weight=2.5"])
    assert result.exit_code == 0, result.output
    shown = tmp_path / "shown.toml"
    shown.write_text(result.stdout, encoding="utf-8")
    again = load_recipe(shown)
    assert again == load_recipe(tiny_recipe_file, overrides=["solver.lr=0.02", "distill.kd_weight=2.5"])
    assert again.solver.lr == 0.02 and again.distill.kd_weight == 2.5


def test_recipe_show_of_the_shipped_file_round_trips(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["recipe", "show", str(TINY_RECIPE)])
    assert result.exit_code == 0, result.output
    (tmp_path / "r.toml").write_text(result.stdout, encoding="utf-8")
    assert load_recipe(tmp_path / "r.toml") == load_recipe(TINY_RECIPE)


def test_recipe_validate(tiny_recipe_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["recipe", "validate", tiny_recipe_file], capsys)
    assert code == 0 and "valid" in out and not err.strip()
    fails(["recipe", "validate", tiny_recipe_file, "--set", "solver.lrr=0.1"], capsys, 3, "solver.lrr", "did you mean", "'lr'")


def test_plugins_lists_the_builtins_as_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plugins", "--check", "--json"], capsys)
    assert code == 0
    status = {info["name"]: info["status"] for info in json.loads(out)}
    for name in ("slimmable_resnet", "fpn", "fcos", "msad_l1", "mse", "cwd"):
        assert status.get(name) == "ok", (name, status.get(name))
    code, out, _ = run(["plugins"], capsys)
    assert code == 0
    for name in ("slimmable_resnet", "fpn", "fcos", "msad_l1", "mse", "cwd"):
        assert name in out


def test_plugins_name_shows_what_the_plugin_declares_its_options_as(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plugins", "slimmable_resnet", "--json"], capsys)
    assert code == 0
    declared = {option["name"]: option["declared"] for option in json.loads(out)[0]["options"]}
    assert declared == {"depth": "", "width": "width", "widths": "", "norm": "training", "freeze_at": "freeze",
                        "weights": "init file", "out_features": ""}
    code, out, _ = run(["plugins", "slimmable_resnet"], capsys)
    assert code == 0 and "declared as" in out and "init file" in out


# -- bad recipes: exit 3, and nothing is started -------------------------------------------------------------------


def test_unknown_recipe_key_in_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(f'base = "{TINY_RECIPE}"\n\n[solver]\nwarmup_iter = 10\n', encoding="utf-8")
    out = tmp_path / "run"
    fails(["teacher", bad, "-o", out], capsys, 3, "solver.warmup_iter", "did you mean", "warmup_iters")
    assert not out.exists()


@pytest.mark.parametrize("override, fragment", [
    ("solver.iters=abc", "solver.iters"),
    ("solver.iters=-5", "solver.iters"),
    ("data.max_sise=10", "did you mean"),
    ("novalue", "novalue"),
])
def test_bad_set_value(override: str, fragment: str, tiny_recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    fails(["train", tiny_recipe_file, "--set", override, "-o", out], capsys, 3, fragment)
    assert not out.exists()


def test_missing_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails(["teacher", tmp_path / "nope.toml", "-o", tmp_path / "run"], capsys, 3, "nope.toml")
    assert not (tmp_path / "run").exists()


# -- runs are never overwritten by accident -------------------------------------------------------------------------


def test_an_existing_run_is_refused_and_force_starts_over(
    trained_teacher: api.TrainResult, tiny_recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "teacher"
    shutil.copytree(trained_teacher.output, run_dir)
    before = tree_digest(run_dir)
    fails(["teacher", tiny_recipe_file, "-o", run_dir], capsys, 1, str(run_dir), "already holds a run", "--force")
    assert tree_digest(run_dir) == before

    code, _, err = run(["teacher", tiny_recipe_file, "-o", run_dir, "--force", "--set", "solver.iters=2", "--set", "solver.steps=[1]"], capsys)
    assert code == 0, err
    assert digest(run_dir / "last.safetensors") != before["last.safetensors"]
    ckpt = api.read_checkpoint(run_dir / "last.safetensors", role="teacher")
    assert json.loads(ckpt.metadata["iteration"]) == 2


def test_stages_default_to_their_own_directories_and_the_teacher_is_never_overwritten(
    trained_teacher: api.TrainResult, tiny_recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Distilling with the recipe that trained the teacher writes beside it, never over it, even with --force."""
    root = tmp_path / "run"
    shutil.copytree(trained_teacher.output, root / "teacher")  # where `msad teacher` puts it by default
    teacher = root / "teacher" / "last.safetensors"
    before = tree_digest(root / "teacher")
    at_root = ["--set", f'run.output="{root}"']
    for out in (["-o", root / "teacher"], ["-o", root / "teacher", "--force"], ["-o", root / "teacher" / "." ]):
        fails(["distill", tiny_recipe_file, "-t", teacher, *at_root, *out], capsys, 2, str(teacher), "--output")
    link = tmp_path / "teacher_link.safetensors"
    link.symlink_to(teacher)  # writing the student over the link's target would replace the teacher too
    fails(["distill", tiny_recipe_file, "-t", link, *at_root, "-o", root / "teacher", "--force"], capsys, 2, str(link))
    assert tree_digest(root / "teacher") == before

    code, _, err = run(["distill", tiny_recipe_file, "-t", teacher, *at_root], capsys)
    assert code == 0, err
    assert tree_digest(root / "teacher") == before  # byte-identical teacher run
    student = root / "student" / "last.safetensors"
    assert api.read_checkpoint(student).role == "student"
    assert api.read_checkpoint(teacher).role == "teacher"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(student.stat().st_mode) == 0o666 & ~mask  # weights follow the umask like the run's other files
    assert stat.S_IMODE((root / "student" / "recipe.toml").stat().st_mode) == 0o666 & ~mask


# -- weights files ------------------------------------------------------------------------------------------------


def test_distill_from_a_student_checkpoint_names_the_role(
    trained_student: api.TrainResult, tiny_recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = fails(["distill", tiny_recipe_file, "--teacher", trained_student.weights, "-o", tmp_path / "s"], capsys, 1, "student", "teacher")
    assert "role" in line or "expected a teacher" in line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("model.backbone.width=0.5", ("width", "0.25", "0.5")),
        # the student copies the teacher's head; a recipe asking for another would save unloadable weights
        ("model.head.num_convs=3", ("model.head.num_convs", "2", "3")),
    ],
)
def test_distill_from_a_teacher_of_another_architecture(
    override: str, fragments: tuple[str, ...], trained_teacher: api.TrainResult, tiny_recipe_file: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    fails(
        ["distill", tiny_recipe_file, "--teacher", trained_teacher.weights, "--set", override, "-o", tmp_path / "s"],
        capsys, 1, *fragments,
    )
    assert not (tmp_path / "s").exists()


@pytest.fixture
def truncated_weights(trained_teacher: api.TrainResult, tmp_path: Path) -> Path:
    path = tmp_path / "truncated.safetensors"
    data = trained_teacher.weights.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("command", ["eval", "distill", "predict"])
def test_truncated_weights(
    command: str, truncated_weights: Path, tiny_recipe_file: Path, synth_dataset: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    argv = {
        "eval": ["eval", tiny_recipe_file, "-w", truncated_weights],
        "distill": ["distill", tiny_recipe_file, "-t", truncated_weights, "-o", out],
        "predict": ["predict", synth_dataset / "val", "-w", truncated_weights, "-o", out],
    }[command]
    fails(argv, capsys, 1, "truncated.safetensors", "truncated")
    assert not out.exists()


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_torch_pickle_suggests_convert(zipfile: bool, tiny_recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model_final.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, path, _use_new_zipfile_serialization=zipfile)
    fails(["eval", tiny_recipe_file, "--weights", path], capsys, 1, "model_final.pt", "msad convert")


def test_missing_weights(tiny_recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails(["eval", tiny_recipe_file, "-w", tmp_path / "nope.safetensors"], capsys, 1, "nope.safetensors")


# -- data problems ------------------------------------------------------------------------------------------------


def _rewrite_json(src: Path, dst: Path, edit) -> Path:
    data = json.loads(src.read_text())
    edit(data)
    dst.write_text(json.dumps(data))
    return dst


def _rename_first_category(data: dict) -> None:
    data["categories"][0]["name"] = "zebra"


def _add_category(data: dict) -> None:
    data["categories"].append({"id": 999, "name": "unicorn", "supercategory": "none"})


@pytest.mark.parametrize("edit, fragment", [(_rename_first_category, "zebra"), (_add_category, "unicorn")], ids=["renamed", "extra"])
def test_eval_on_a_val_set_with_other_classes(
    edit, fragment: str, trained_teacher: api.TrainResult, tiny_recipe_file: Path, synth_dataset: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    val = _rewrite_json(synth_dataset / "annotations" / "val.json", tmp_path / "val.json", edit)
    fails(["eval", tiny_recipe_file, "-w", trained_teacher.weights, "--set", f'data.val_annotations="{val}"'], capsys, 1, fragment)


def test_distill_on_training_data_with_other_classes(
    trained_teacher: api.TrainResult, tiny_recipe_file: Path, synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = _rewrite_json(synth_dataset / "annotations" / "train.json", tmp_path / "train.json", _rename_first_category)
    out = tmp_path / "s"
    fails(["distill", tiny_recipe_file, "-t", trained_teacher.weights, "--set", f'data.train_annotations="{train}"', "-o", out], capsys, 1, "zebra")
    assert not (out / "last.safetensors").exists()


@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_empty_dataset(
    command: str, trained_baseline: api.TrainResult, tiny_recipe_file: Path, synth_dataset: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    empty = _rewrite_json(synth_dataset / "annotations" / "val.json", tmp_path / "empty.json", lambda d: d.update(images=[], annotations=[]))
    out = tmp_path / "run"
    argv = {
        "train": ["train", tiny_recipe_file, "--set", f'data.train_annotations="{empty}"', "-o", out],
        "eval": ["eval", tiny_recipe_file, "-w", trained_baseline.weights, "--set", f'data.val_annotations="{empty}"'],
    }[command]
    fails(argv, capsys, 1, "empty.json", "no images")
    assert not (out / "last.safetensors").exists()


def test_data_synth_never_overwrites_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ds"
    small = ["--train", "2", "--val", "1", "--height", "64", "--width", "80"]
    code, out, err = run(["data", "synth", root, *small], capsys)
    assert code == 0, err
    assert "wrote 2 train / 1 val images" in out
    before = tree_digest(root)
    fails(["data", "synth", root, *small, "--seed", "5"], capsys, 1, str(root), "--force")
    assert tree_digest(root) == before
    code, _, err = run(["data", "synth", root, *small, "--seed", "5", "--force"], capsys)
    assert code == 0, err
    assert digest(root / "annotations" / "train.json") != before["annotations/train.json"]


# -- eval and predict ---------------------------------------------------------------------------------------------


def test_eval_json_matches_the_api(
    trained_student: api.TrainResult, tiny_recipe: Recipe, tiny_recipe_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out_json = tmp_path / "metrics.json"
    code, out, err = run(["eval", tiny_recipe_file, "-w", trained_student.weights, "--json", out_json], capsys)
    assert code == 0, err
    assert "AP50" in out
    written = json.loads(out_json.read_text())
    assert written["role"] == "student" and written["branch"] is None
    expected = api.evaluate(tiny_recipe, trained_student.weights)["metrics"]
    assert list(written["metrics"]) == list(expected)
    for key, value in expected.items():
        assert (math.isnan(value) and written["metrics"][key] is None) or written["metrics"][key] == value, key  # NaN -> null


def test_eval_backend_option_gives_the_reference_metrics(
    trained_student: api.TrainResult, tiny_recipe: Recipe, tiny_recipe_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("faster_coco_eval")
    out_json = tmp_path / "metrics.json"
    code, out, err = run(["eval", tiny_recipe_file, "-w", trained_student.weights, "--eval-backend", "faster_coco_eval",
                          "--json", out_json], capsys)
    assert code == 0, err
    written = json.loads(out_json.read_text())["metrics"]
    expected = api.evaluate(tiny_recipe, trained_student.weights)["metrics"]  # pycocotools, the default
    for key, value in expected.items():
        assert (math.isnan(value) and written[key] is None) or abs(written[key] - value) <= 1e-2, key  # 0-100 scale


def test_eval_branch_of_a_student_is_refused(trained_student: api.TrainResult, tiny_recipe_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails(["eval", tiny_recipe_file, "-w", trained_student.weights, "--branch", "hr"], capsys, 2, "--branch", "student")


def test_predict_command(trained_student: api.TrainResult, synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred"
    images = sorted((synth_dataset / "val").iterdir())[:2]
    code, stdout, err = run(["predict", *images, "-w", trained_student.weights, "-o", out, "--score-threshold", "0", "--device", "cpu"], capsys)
    assert code == 0, err
    preds = json.loads((out / "predictions.json").read_text())
    assert preds and {p["file_name"] for p in preds} <= {str(p) for p in images}
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{p.stem}.png" for p in images)
    assert "predictions.json" in stdout
    assert "input scale: hr" in stdout  # a student sees the images as eval shows them, and says so


def test_predict_takes_quoted_globs_and_searches_folders_recursively(
    trained_student: api.TrainResult, synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = sorted((synth_dataset / "val").iterdir())
    for name, source in (("imgs/a.png", src[0]), ("imgs/sub/b.png", src[1])):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, tmp_path / name)
    (tmp_path / "imgs" / "sub" / "notes.txt").write_text("not an image")
    monkeypatch.chdir(tmp_path)
    base = ["-w", trained_student.weights, "--device", "cpu", "--no-labels", "--draw-threshold", "0.5", "--input-scale", "lr"]
    code, stdout, err = run(["predict", "imgs", *base, "-o", "out"], capsys)
    assert code == 0, err
    assert sorted(str(p.relative_to("out")) for p in Path("out").rglob("*.png")) == ["a.png", "sub/b.png"]
    assert "in 2 images" in stdout and "skipped 1 file not an image by suffix" in stdout and "notes.txt" in stdout
    assert "input scale: lr" in stdout
    code, stdout, err = run(["predict", "**/*.png", *base, "-o", "out"], capsys)  # out/ holds drawings: not inputs
    assert code == 0, err
    assert "in 2 images" in stdout
    code, stdout, err = run(["predict", "imgs/**/b.png", *base, "-o", "out2"], capsys)
    assert code == 0, err
    assert [p.name for p in Path("out2").glob("*.png")] == ["b.png"]
    fails(["predict", "imgs/*.jpg", *base, "-o", "out3"], capsys, 1, "no file matches the pattern 'imgs/*.jpg'")
    assert not Path("out3").exists()


def test_predict_on_one_image_says_image_and_shows_its_progress(
    trained_student: api.TrainResult, synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = sorted((synth_dataset / "val").iterdir())[0]
    code, stdout, err = run(["predict", image, "-w", trained_student.weights, "-o", tmp_path / "pred", "--device", "cpu"], capsys)
    assert code == 0, err
    assert " in 1 image → " in stdout and "1 images" not in stdout
    assert re.search(r"predict: 1 image in \d+:\d\d \(.* images/s\)", err)  # the progress's closing line (stderr)


def test_predict_on_a_corrupt_image(trained_student: api.TrainResult, synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(next((synth_dataset / "val").iterdir()), images / "good.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3)
    out = tmp_path / "pred"
    fails(["predict", images, "-w", trained_student.weights, "-o", out], capsys, 1, "broken.jpg")
    assert not (out / "predictions.json").exists()
    assert not out.exists() or not list(out.glob("*.png"))


def _coco(annotations: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotations))


def _load_results(gt, results: Path):
    with contextlib.redirect_stdout(io.StringIO()):
        return gt.loadRes(str(results))


def test_eval_results_and_per_class_are_coco(
    trained_student: api.TrainResult, tiny_recipe_file: Path, synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pycocotools.cocoeval import COCOeval

    results, report = tmp_path / "results.json", tmp_path / "metrics.json"
    argv = ["eval", tiny_recipe_file, "-w", trained_student.weights, "--per-class", "--results", results, "--json", report]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    gt = _coco(synth_dataset / "annotations" / "val.json")
    names = [c["name"] for c in gt.loadCats(gt.getCatIds())]
    assert "AP per class" in out and all(name in out for name in names)
    assert sorted(json.loads(report.read_text())["per_class"]) == sorted(names)
    detections = _load_results(gt, results)  # COCO.loadRes accepts the file
    assert len(detections.getAnnIds()) > 0 and set(detections.getImgIds()) <= set(gt.getImgIds())
    # the file holds exactly the detections that were scored: pycocotools on it gives the reported AP
    with contextlib.redirect_stdout(io.StringIO()):
        check = COCOeval(gt, detections, iouType="bbox")
        check.evaluate(), check.accumulate(), check.summarize()
    assert check.stats[0] * 100 == pytest.approx(json.loads(report.read_text())["metrics"]["AP"], abs=1e-6)


def test_predict_with_annotations_is_a_coco_results_file_and_hr_input_matches_eval(
    trained_student: api.TrainResult, tiny_recipe_file: Path, synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --annotations, COCO.loadRes accepts predictions.json; with --input-scale hr a student sees the images
    as eval shows them (its ×1/k copy), so it finds eval's detections."""
    annotations = synth_dataset / "annotations" / "val.json"
    out = tmp_path / "pred"
    argv = ["predict", synth_dataset / "val", "-w", trained_student.weights, "-o", out, "--annotations", annotations,
            "--input-scale", "hr", "--score-threshold", "0", "--device", "cpu", "--batch-size", "3", "--no-draw"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    gt = _coco(annotations)
    predicted = _load_results(gt, out / "predictions.json")
    ids_by_name = {img["file_name"]: img["id"] for img in gt.dataset["images"]}
    for pred in json.loads((out / "predictions.json").read_text()):
        assert pred["image_id"] == ids_by_name[Path(pred["file_name"]).name]
    results = tmp_path / "eval.json"
    code, _, err = run(["eval", tiny_recipe_file, "-w", trained_student.weights, "--results", results], capsys)
    assert code == 0, err
    evaluated = _load_results(gt, results)
    for image_id in gt.getImgIds():
        mine = sorted((a["category_id"], a["score"]) for a in predicted.loadAnns(predicted.getAnnIds(imgIds=image_id)))
        theirs = sorted((a["category_id"], a["score"]) for a in evaluated.loadAnns(evaluated.getAnnIds(imgIds=image_id)))
        assert len(mine) == len(theirs) and all(m[0] == t[0] and m[1] == pytest.approx(t[1], abs=1e-5) for m, t in zip(mine, theirs, strict=True))
    fewer = _rewrite_json(annotations, tmp_path / "fewer.json", lambda d: d.update(images=d["images"][1:]))
    fails(["predict", synth_dataset / "val", "-w", trained_student.weights, "-o", tmp_path / "x", "--annotations", fewer],
          capsys, 1, "fewer.json", "1 of 8 images are not in")
    assert not (tmp_path / "x").exists()


def test_predict_never_writes_over_inputs_or_foreign_files(
    trained_student: api.TrainResult, synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = sorted((synth_dataset / "val").iterdir())
    images = tmp_path / "images"
    for name, source in (("d1/a.png", src[0]), ("d1/a_2.png", src[1]), ("d2/a.png", src[2])):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, images / name)
    before = tree_digest(images)
    base = ["-w", trained_student.weights, "--device", "cpu", "--batch-size", "2"]
    out = tmp_path / "out"
    code, _, err = run(["predict", images / "d1" / "a.png", images / "d1", images / "d2", *base, "-o", out], capsys)
    assert code == 0, err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["d1/a.png", "d1/a_2.png", "d2/a.png"]
    for extra in ([], ["--no-draw"]):  # its own files only (an earlier run's drawings are its own too)
        code, _, err = run(["predict", images / "d1", images / "d2", *base, "-o", out, *extra], capsys)
        assert code == 0, err
    for force in ([], ["--force"]):  # drawing d1/a.png into images/ would replace an input
        fails(["predict", images / "d1", images / "d2", *base, "-o", images, *force], capsys, 2, "overwrite", "a.png")
    assert tree_digest(images) == before
    (out / "notes.txt").write_text("mine")
    fails(["predict", images / "d1", images / "d2", *base, "-o", out], capsys, 1, "notes.txt", "--force")
    code, _, err = run(["predict", images / "d1", images / "d2", *base, "-o", out, "--force"], capsys)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and not list(out.glob(".msad-predict-*"))


def test_flops_command(tiny_recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With a recipe: its width (one row) and its test size; --widths sweeps."""
    out_json = tmp_path / "flops.json"
    code, out, err = run(["flops", tiny_recipe_file, "--classes", "3", "--json", out_json], capsys)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["image_size"] == [128, 160] and report["num_classes"] == 3  # data.test_size × data.max_size
    assert [row["width"] for row in report["rows"]] == [0.25]
    code, out, err = run(["flops", tiny_recipe_file, "--widths", "1,0.5", "--height", "64", "--width", "96", "--json", out_json], capsys)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["image_size"] == [64, 96] and [row["width"] for row in report["rows"]] == [1.0, 0.5]
    assert report["rows"][0]["backbone_gmacs_hr"] == pytest.approx(report["reference_gmacs"])
    assert "reference" in out and "0.5" in out and not err.strip()


def test_flops_on_a_timm_recipe_prints_one_row(tiny_recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("timm")
    timm = ["--set", 'model.backbone.name="timm"', "--set", 'model.backbone.model_name="resnet18"']
    out_json = tmp_path / "flops.json"
    code, out, err = run(["flops", tiny_recipe_file, *timm, "--json", out_json], capsys)
    assert code == 0, err
    (row,) = json.loads(out_json.read_text())["rows"]
    assert row["width"] is None and row["teacher_capacity"] == pytest.approx(1.25, abs=0.02)
    assert sum("│ " in line and "x /" in line for line in out.splitlines()) == 1  # one table row
    fails(["flops", tiny_recipe_file, *timm, "--widths", "1,0.5"], capsys, 2, "timm", "width")


def test_eval_notes_a_resolution_other_than_the_trained_one(
    tiny_recipe, tiny_recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An LR baseline evaluated without its data.scale gets a note on stderr; with it, none."""
    lr = api.train(tiny_recipe.model_copy(update={"data": tiny_recipe.data.model_copy(update={"scale": 0.5})}), output=tmp_path / "lr")
    code, _, err = run(["eval", tiny_recipe_file, "--weights", lr.weights, "--json", tmp_path / "e.json"], capsys)
    assert code == 0 and "trained at data.scale=0.5" in err
    report = json.loads((tmp_path / "e.json").read_text())
    assert (report["data_scale"], report["trained_data_scale"]) == (1.0, 0.5)
    code, _, err = run(["eval", tiny_recipe_file, "--weights", lr.weights, "--set", "data.scale=0.5"], capsys)
    assert code == 0 and "note:" not in err
