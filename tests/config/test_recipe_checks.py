"""Recipe values that used to validate and then train silently wrong, and errors credited to the right input."""

from __future__ import annotations

from pathlib import Path

import pytest

from msad.config import load_recipe
from msad.errors import RecipeError

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.toml"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("solver.lr=inf", "solver.lr: input should be a finite number"),
        ("solver.weight_decay=nan", "solver.weight_decay: input should be a finite number"),
        ("model.pixel_std=[inf, 57.0, 57.0]", "model.pixel_std[0]: input should be a finite number"),
        ("model.pixel_std=[58.0, 0.0, 57.0]", "model.pixel_std[1]"),
        ("model.pixel_std=[58.0, 57.0, -1.0]", "model.pixel_std[2]"),
        ("model.pixel_mean=[nan, 1.0, 1.0]", "model.pixel_mean[0]: input should be a finite number"),
        ('run.output=""', "run.output: must name a run directory"),
        ('run.best_metric="APP"', "unknown metric 'APP'; choose one of AP, AP50, AP75, APs, APm, APl"),
        ('data.on_bad_annotation="ignore"', "data.on_bad_annotation"),
    ],
)
def test_silently_wrong_values_are_refused_naming_the_set(override: str, fragment: str) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(TINY, overrides=[override])
    message = str(info.value)
    assert fragment in message
    assert message.startswith(f"--set {override}: "), message  # the override is blamed, not the recipe file
    assert "\n" not in message


def test_an_error_in_the_file_still_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.read_text(encoding="utf-8").replace("lr = 0.02", "lr = inf"), encoding="utf-8")
    with pytest.raises(RecipeError, match=rf"^{bad}: solver.lr: input should be a finite number"):
        load_recipe(bad, overrides=["solver.iters=3"])


def test_a_binary_recipe_is_a_recipe_error_naming_the_file(tmp_path: Path) -> None:
    binary = tmp_path / "weights.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(RecipeError, match=rf"^{binary}: not a TOML text file") as info:
        load_recipe(binary)
    assert info.value.exit_code == 3


@pytest.mark.parametrize("order", ["name first", "name last"])
def test_switching_the_plugin_with_set_drops_the_old_plugins_options(order: str) -> None:
    pytest.importorskip("timm")
    sets = ['model.backbone.name="timm"', 'model.backbone.model_name="resnet18"']
    recipe = load_recipe(TINY, overrides=sets if order == "name first" else sets[::-1])
    assert recipe.model.backbone.name == "timm"
    assert recipe.model.backbone.options == {"model_name": "resnet18"}  # width/norm/freeze_at of slimmable_resnet gone


def test_setting_the_same_plugin_name_keeps_its_options() -> None:
    recipe = load_recipe(TINY, overrides=['model.backbone.name="slimmable_resnet"'])
    assert recipe.model.backbone.options["width"] == 0.25
