"""Recipe models and loading: shipped recipes, stage solvers, base inheritance, --set, errors, TOML round trip."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from msad.config import PluginSpec, Recipe, load_recipe, recipe_from_dict
from msad.config.toml_writer import dumps
from msad.errors import RecipeError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

MINIMAL = """
[data]
train_images = "d/train"
train_annotations = "d/train.json"
val_images = "d/val"
val_annotations = "d/val.json"

[solver]
batch_size = 4
lr = 0.01
iters = 100
steps = [60, 80]
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _minimal(tmp_path: Path, extra: str = "") -> Path:
    return _write(tmp_path, "r.toml", MINIMAL + extra)


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_round_trips(path: Path, tmp_path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.base is None
    again = load_recipe(_write(tmp_path, "dumped.toml", recipe.dump_toml()))
    assert again == recipe


def test_shipped_recipe_set() -> None:
    names = {p.stem for p in RECIPES.glob("*.toml")}
    assert {"coco", "w100", "w075", "w050", "w025", "tiny"} <= names


def test_w075_stage_solvers() -> None:
    recipe = load_recipe(RECIPES / "w075.toml")
    teacher = recipe.solver_for("teacher")
    assert (teacher.batch_size, teacher.lr, teacher.iters, teacher.steps) == (8, 0.01, 180000, [120000, 160000])
    distill = recipe.solver_for("distill")
    assert (distill.batch_size, distill.lr, distill.iters, distill.steps) == (32, 0.02, 45000, [30000, 40000])
    assert distill.warmup_iters == 500 and distill.momentum == 0.9
    assert recipe.solver_for("train") == recipe.solver
    assert recipe.model.backbone.name == "slimmable_resnet"
    assert recipe.model.backbone.options["width"] == 0.75
    assert recipe.data.train_sizes == [640, 672, 704, 736, 768, 800]
    assert (recipe.data.max_size, recipe.data.test_size) == (1333, 800)


@pytest.mark.parametrize(
    ("name", "teacher", "distill"),
    [
        ("w025", (16, 0.01, 90000), (32, 0.02, 45000)),
        ("w050", (8, 0.01, 180000), (32, 0.01, 45000)),
        ("w100", (8, 0.01, 180000), (16, 0.01, 90000)),
    ],
)
def test_paper_schedules(name: str, teacher: tuple, distill: tuple) -> None:
    recipe = load_recipe(RECIPES / f"{name}.toml")
    t, d = recipe.solver_for("teacher"), recipe.solver_for("distill")
    assert (t.batch_size, t.lr, t.iters) == teacher
    assert (d.batch_size, d.lr, d.iters) == distill


def test_tiny_recipe_fits_the_synthetic_images() -> None:
    """The CPU default trains and tests the 256×320 synthetic images at their own size, and the teacher's
    padding multiple keeps HR and LR pyramids aligned without padding them."""
    from msad.data import resized_shape
    from msad.data.synth import synth_profile

    recipe = load_recipe(RECIPES / "tiny.toml")
    default_size = synth_profile("small").image_size  # what generate_synthetic_coco writes by default
    data, teacher = recipe.data, recipe.teacher
    for short in [*data.train_sizes, data.test_size]:
        assert resized_shape(*default_size, short, data.max_size) == default_size
    assert teacher.size_divisibility % (32 * teacher.k) == 0
    assert all(side % teacher.size_divisibility == 0 for side in default_size)
    assert recipe.model.backbone.name == "slimmable_resnet" and recipe.data.train_images.startswith("data/synth")


def test_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(_minimal(tmp_path))
    assert recipe.model.pixel_mean == (123.675, 116.28, 103.53)
    assert recipe.data.train_sizes == list(range(640, 801, 32))
    assert (recipe.model.backbone.name, recipe.model.neck.name, recipe.model.head.name) == (
        "slimmable_resnet", "fpn", "fcos"
    )
    assert recipe.distill.loss.name == "msad_l1" and recipe.teacher.k == 2
    assert recipe.solver.warmup_factor == 0.001 and recipe.solver.warmup_iters == 500
    assert recipe.solver_for("teacher") == recipe.solver


def test_unknown_key_has_path_and_suggestion(tmp_path: Path) -> None:
    path = _minimal(tmp_path, "\n[run]\nouptut = 'x'\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "run.ouptut" in message and "did you mean 'output'?" in message
    assert info.value.exit_code == 3


def test_plugin_option_typo_suggests(tmp_path: Path) -> None:
    path = _minimal(tmp_path, "\n[model.backbone]\nwidht = 0.5\n")
    with pytest.raises(RecipeError, match=r"model\.backbone\.widht: unknown option 'widht', did you mean 'width'\?"):
        load_recipe(path)


def test_bad_type_message(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"data\.flip_prob: input should be a valid number \(got 'abc'\)"):
        load_recipe(_minimal(tmp_path), overrides=["data.flip_prob='abc'"])
    with pytest.raises(RecipeError, match=r"model\.backbone\.width: input should be a valid number \(got 'abc'\)"):
        load_recipe(_minimal(tmp_path), overrides=["model.backbone.width=abc"])


def test_several_errors_report_the_first(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"\(\+1 more\)$"):
        load_recipe(_minimal(tmp_path), overrides=["data.flip_prob=2", "run.device=gpu"])


def test_solver_checks(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"solver: steps must be strictly increasing"):
        load_recipe(_minimal(tmp_path), overrides=["solver.steps=[80, 60]"])
    with pytest.raises(RecipeError, match=r"teacher\.solver: steps must be < iters \(100\)"):
        load_recipe(_minimal(tmp_path), overrides=["teacher.solver.steps=[150]"])
    with pytest.raises(RecipeError, match=r"solver\.lr: input should be greater than 0"):
        load_recipe(_minimal(tmp_path), overrides=["solver.lr=0"])


def test_k4_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"teacher\.k: k = 4: .*only k = 2 is supported"):
        load_recipe(_minimal(tmp_path, "\n[teacher]\nk = 4\n"))


def test_missing_file_and_toml_syntax(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="recipe not found: .*nope.toml"):
        load_recipe(tmp_path / "nope.toml")
    bad = _write(tmp_path, "bad.toml", "[solver]\nlr = = 3\n")
    with pytest.raises(RecipeError, match=r"bad\.toml: invalid TOML: .*line 2"):
        load_recipe(bad)


def test_base_inheritance_merges_tables(tmp_path: Path) -> None:
    _write(
        tmp_path, "base.toml",
        MINIMAL + "\n[model.backbone]\nwidth = 0.5\nnorm = 'bn'\n[distill.loss]\nname = 'msad_l1'\nalpha = 0.3\n",
    )
    sub = tmp_path / "sub"
    sub.mkdir()
    child = _write(
        sub, "child.toml",
        "base = '../base.toml'\n[model.backbone]\nwidth = 0.25\n[solver]\nlr = 0.02\nsteps = [50]\n"
        "[distill.loss]\nname = 'mse'\n",
    )
    recipe = load_recipe(child)
    assert recipe.model.backbone.options == {"width": 0.25, "norm": "bn"}
    assert (recipe.solver.lr, recipe.solver.batch_size, recipe.solver.steps) == (0.02, 4, [50])
    assert recipe.data.train_images == "d/train"
    # A plugin table whose name changes replaces the base one (alpha does not leak into mse).
    assert recipe.distill.loss == PluginSpec(name="mse")
    assert recipe.base is None


def test_two_level_base_refused(tmp_path: Path) -> None:
    _write(tmp_path, "a.toml", MINIMAL)
    _write(tmp_path, "b.toml", "base = 'a.toml'\n")
    child = _write(tmp_path, "c.toml", "base = 'b.toml'\n")
    with pytest.raises(RecipeError, match=r"b\.toml: a base recipe cannot have its own base"):
        load_recipe(child)
    with pytest.raises(RecipeError, match="recipe not found"):
        load_recipe(_write(tmp_path, "d.toml", "base = 'missing.toml'\n"))


def test_set_overrides(tmp_path: Path) -> None:
    recipe = load_recipe(
        _minimal(tmp_path),
        overrides=[
            "solver.lr=0.05",
            "solver.iters=200",
            "run.output=runs/x y",
            "run.seed = 7",
            "data.train_sizes=[224, 256]",
            "run.sync_bn=true",
            'run.best_metric="AP50"',
            "model.backbone.width=0.5",
            "teacher.solver.batch_size=2",
        ],
    )
    assert recipe.solver.lr == 0.05 and recipe.solver.iters == 200
    assert recipe.run.output == "runs/x y" and recipe.run.seed == 7
    assert recipe.data.train_sizes == [224, 256]
    assert recipe.run.sync_bn is True and recipe.run.best_metric == "AP50"
    assert recipe.model.backbone.options == {"width": 0.5}
    assert recipe.solver_for("teacher").batch_size == 2


def test_set_errors(tmp_path: Path) -> None:
    path = _minimal(tmp_path)
    with pytest.raises(RecipeError, match=r"--set solver\.lrr=1: solver\.lrr: unknown key 'lrr', did you mean 'lr'\?"):
        load_recipe(path, overrides=["solver.lrr=1"])
    with pytest.raises(RecipeError, match="unknown key 'modle', did you mean 'model'"):
        load_recipe(path, overrides=["modle.backbone.width=1"])
    with pytest.raises(RecipeError, match="expected dotted.key=value"):
        load_recipe(path, overrides=["solver.lr"])
    with pytest.raises(RecipeError, match="not a table"):
        load_recipe(path, overrides=["solver.lr.x=1"])
    with pytest.raises(RecipeError, match=r"model\.backbone\.widht: .*did you mean 'width'"):
        load_recipe(path, overrides=["model.backbone.widht=1"])


def test_best_metric_none_round_trips(tmp_path: Path) -> None:
    recipe = load_recipe(_minimal(tmp_path), overrides=["run.best_metric=''"])
    assert recipe.run.best_metric is None
    assert load_recipe(_write(tmp_path, "d.toml", recipe.dump_toml())) == recipe


def test_plugin_spec_shapes(tmp_path: Path) -> None:
    assert PluginSpec.model_validate({"name": "x", "a": 1}).options == {"a": 1}
    assert PluginSpec.model_validate({"name": "x", "options": {"a": 1}, "b": 2}).options == {"a": 1, "b": 2}
    recipe = load_recipe(_minimal(tmp_path, "\n[model.head]\nnum_convs = 2\n"))
    assert recipe_from_dict(recipe.model_dump(mode="json")) == recipe
    assert recipe_from_dict(recipe.to_toml_dict()) == recipe
    assert "base" not in recipe.to_toml_dict()


def test_recipe_from_dict_errors_without_source() -> None:
    with pytest.raises(RecipeError, match=r"^data: missing required key"):
        recipe_from_dict({"solver": {"batch_size": 1, "lr": 1, "iters": 1}})
    assert isinstance(recipe_from_dict(tomllib.loads(MINIMAL)), Recipe)


def test_toml_writer_values() -> None:
    data = {
        "a": 1, "b": 0.001, "c": "q\"\\\n\té", "d": [1, 2.5, "x"], "e": True, "f": None,
        "t": {"x": [[1], [2]], "inline": [{"k": 1}], "u": {"deep": float("inf")}}, "empty": {}, "odd key": 2,
    }
    parsed = tomllib.loads(dumps(data))
    expected = {k: v for k, v in data.items() if v is not None}
    assert parsed == expected


@pytest.mark.parametrize(("text", "expected"), [("", "auto"), ('sync_bn = "auto"', "auto"), ("sync_bn = true", True), ("sync_bn = false", False)])
def test_sync_bn_choices(text: str, expected: object, tmp_path: Path) -> None:
    assert load_recipe(_minimal(tmp_path, f"\n[run]\n{text}\n")).run.sync_bn == expected


@pytest.mark.parametrize("value", ['"sometimes"', "1", '"true"'])
def test_sync_bn_refuses_anything_else(value: str, tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r'run\.sync_bn.*true, false or "auto"'):
        load_recipe(_minimal(tmp_path, f"\n[run]\nsync_bn = {value}\n"))


@pytest.mark.parametrize("value", ['"yes"', "1", '"off"'])
def test_teacher_sync_bn_refuses_anything_else(value: str, tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r'teacher\.sync_bn.*true, false or "auto"'):
        load_recipe(_minimal(tmp_path, f"\n[teacher]\nsync_bn = {value}\n"))
