"""The recipe → objects builders of ``msad.build``: losses, inference, engine settings (solver defaults declared once)."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from pydantic_core import to_jsonable_python

from msad.build import build_criterion, build_distill_loss, build_postprocess, run_settings, solver_settings
from msad.config import Recipe, RunRecipe, SolverOverrides, SolverRecipe, recipe_from_dict
from msad.engine import RunSettings, SolverSettings, lr_at
from msad.errors import RecipeError
from msad.roles import ROLES, build_model, get_role

DATA = {"train_images": "t", "train_annotations": "t.json", "val_images": "v", "val_annotations": "v.json"}


def _recipe(**sections) -> Recipe:
    """A recipe giving only the required solver fields (everything else at its default)."""
    return recipe_from_dict({"data": DATA, "solver": {"batch_size": 2, "lr": 0.02, "iters": 100}, **sections})


@pytest.mark.parametrize(("recipe_model", "settings"), [(SolverRecipe, SolverSettings), (RunRecipe, RunSettings)])
def test_recipe_tables_are_derived_from_the_engine_settings(recipe_model, settings) -> None:
    """One declaration: the recipe's fields, constraints and defaults are the engine's (in TOML shape)."""
    engine = settings.__pydantic_fields__
    assert list(recipe_model.model_fields) == list(engine)
    for name, info in recipe_model.model_fields.items():
        assert info.metadata == engine[name].metadata, name
        assert info.is_required() == engine[name].is_required(), name
        if not info.is_required():
            assert info.default == to_jsonable_python(engine[name].default), name
    if recipe_model is SolverRecipe:
        assert list(SolverOverrides.model_fields) == list(engine)


def test_recipe_defaults_reach_the_engine_unchanged() -> None:
    recipe = _recipe()
    assert solver_settings(recipe, stage=get_role("baseline").stage) == SolverSettings(batch_size=2, lr=0.02, iters=100)
    assert run_settings(recipe) == RunSettings()


@pytest.mark.parametrize("role", ROLES)
def test_engine_uses_the_recipe_defaults(role: str) -> None:
    solver = solver_settings(_recipe(), stage=get_role(role).stage)
    assert (solver.warmup_factor, solver.warmup_iters) == (0.001, 500)  # detectron2's factor, the paper's 500 iters
    assert (solver.momentum, solver.weight_decay, solver.gamma) == (0.9, 1e-4, 0.1)
    assert lr_at(0, solver) == pytest.approx(0.02 * 0.001)
    assert lr_at(250, solver) == pytest.approx(0.02 * (0.001 * 0.5 + 0.5))
    assert lr_at(500, solver) == pytest.approx(0.02)


def test_stage_overrides_reach_the_engine_of_their_role_only() -> None:
    recipe = _recipe(teacher={"solver": {"warmup_iters": 7, "lr": 0.01}}, distill={"solver": {"warmup_factor": 0.5}})
    teacher, student, baseline = (solver_settings(recipe, stage=get_role(r).stage) for r in ("teacher", "student", "baseline"))
    assert (teacher.warmup_iters, teacher.lr, teacher.warmup_factor) == (7, 0.01, 0.001)
    assert (student.warmup_iters, student.lr, student.warmup_factor) == (500, 0.02, 0.5)
    assert (baseline.warmup_iters, baseline.lr, baseline.warmup_factor) == (500, 0.02, 0.001)


@pytest.mark.parametrize("override", [{"lr": -1.0}, {"warmup_factor": 0.0}, {"momentum": 1.0}, {"steps": [0]}])
def test_stage_overrides_keep_the_solver_constraints(override: dict) -> None:
    with pytest.raises(RecipeError, match="teacher.solver"):
        _recipe(teacher={"solver": override})


def test_run_settings_follow_the_run_table() -> None:
    run = run_settings(_recipe(run={"output": "somewhere", "seed": 3, "eval_period": 9}))
    assert isinstance(run, RunSettings)
    assert (str(run.output), run.seed, run.eval_period) == ("somewhere", 3, 9)


def test_the_teacher_stage_can_set_its_own_sync_bn() -> None:
    recipe = _recipe(run={"sync_bn": "auto"}, teacher={"sync_bn": False})
    assert [run_settings(recipe, stage=get_role(r).stage).sync_bn for r in ("baseline", "teacher", "student")] == ["auto", False, "auto"]
    assert run_settings(recipe).sync_bn == "auto"  # no role: the [run] table as written
    assert run_settings(_recipe(run={"sync_bn": True}), stage=get_role("teacher").stage).sync_bn is True  # left out: run.sync_bn


def test_criterion_and_postprocess_take_the_recipe_values() -> None:
    recipe = _recipe(model={
        "loss": {"focal_alpha": 0.3, "focal_gamma": 1.5, "center_radius": 2.0},
        "postprocess": {"score_threshold": 0.1, "pre_nms_topk": 50, "nms_threshold": 0.5, "max_detections": 7},
    })
    crit = build_criterion(recipe, num_classes=5)
    assert (crit.num_classes, crit.focal_alpha, crit.focal_gamma, crit.center_radius) == (5, 0.3, 1.5, 2.0)
    post = build_postprocess(recipe)
    assert (post.score_threshold, post.pre_nms_topk, post.nms_threshold, post.max_detections) == (0.1, 50, 0.5, 7)


@pytest.mark.parametrize("role", ["baseline", "teacher"])
def test_a_frozen_backbone_without_weights_is_refused(role: str, tiny_recipe: Recipe, tmp_path) -> None:
    from msad import api
    from msad.config import load_recipe

    frozen = tiny_recipe.model_copy(deep=True)
    frozen.model.backbone.options["freeze_at"] = 2
    with pytest.raises(RecipeError, match=r"freeze_at = 2 .*random initialisation.*model\.backbone\.weights"):
        get_role(role).check_trainable(frozen)
    train = api.train_teacher if role == "teacher" else api.train
    with pytest.raises(RecipeError, match="freeze_at"):
        train(frozen, output=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything is written
    get_role("student").check_trainable(frozen)  # initialised from the teacher: its frozen stages are trained
    get_role(role).check_trainable(tiny_recipe)  # freeze_at = 0
    with_weights = frozen.model_copy(deep=True)
    with_weights.model.backbone.options["weights"] = "imagenet.pt"
    get_role(role).check_trainable(with_weights)
    for name in ("coco.toml", "w025.toml", "w050.toml", "w075.toml", "w100.toml"):  # the paper recipes freeze nothing
        recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / name)
        assert not recipe.model.backbone.options.get("freeze_at")


def test_frozen_stages_without_an_init_file_are_refused_in_the_plugins_own_option_names(renamed_options_plugin) -> None:
    from msad.build import check_frozen_backbone

    frozen = _recipe(model={"backbone": {"name": "renamed", "frozen_stages": 2}})
    with pytest.raises(RecipeError, match=(
        r"^model\.backbone\.frozen_stages = 2 freezes backbone stages at their random initialisation: "
        r"set model\.backbone\.init_file to an ImageNet checkpoint, or frozen_stages = 0"
    )):
        check_frozen_backbone(frozen)
    check_frozen_backbone(_recipe(model={"backbone": {"name": "renamed", "frozen_stages": 2, "init_file": "x.pt"}}))


def test_a_plugin_refusing_a_recipe_value_is_a_recipe_error_naming_the_table() -> None:
    with pytest.raises(RecipeError, match=r"^model\.backbone \(slimmable_resnet\): depth must be one of \[50, 101\]"):
        build_model(_recipe(model={"backbone": {"depth": 34}}), role="baseline", num_classes=2)
    with pytest.raises(RecipeError, match=r"^model\.head \(fcos\): box_init must be one of 'normal', 'half_normal', got 'x'$"):
        build_model(_recipe(model={"head": {"box_init": "x"}}), role="baseline", num_classes=2)
    with pytest.raises(RecipeError, match=r"^distill\.loss \(msad_l1\): temperature must be positive"):
        build_distill_loss(_recipe(distill={"loss": {"temperature": 0.0}}))


def test_only_the_first_process_of_a_machine_stats_the_image_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from msad.build import build_train_dataset
    from msad.data import DatasetError

    annotations = tmp_path / "t.json"
    annotations.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "missing.png", "width": 8, "height": 8}],
        "annotations": [], "categories": [{"id": 1, "name": "a"}],
    }))
    recipe = _recipe(data=DATA | {"train_images": str(tmp_path), "train_annotations": str(annotations)})
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(DatasetError, match="1 of 1 images .* missing.*missing.png"):
        build_train_dataset(recipe)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert len(build_train_dataset(recipe)) == 1  # no stat here: the missing file is met when it is read


def test_recipe_and_evaluator_accept_the_same_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from msad.build import build_evaluator
    from msad.config import recipe
    from msad.errors import MissingDependencyError
    from msad.evaluation import EVAL_BACKENDS

    assert get_args(recipe.EvalBackend) == EVAL_BACKENDS  # declared twice to keep msad.config free of torch
    assert _recipe().eval.backend == "pycocotools"
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    with pytest.raises(MissingDependencyError, match="msad\\[fast-eval\\]"):  # at build time, not after training
        build_evaluator(_recipe(eval={"backend": "faster_coco_eval"}), None, collate=None, batch_size=1)
