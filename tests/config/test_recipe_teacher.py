"""The teacher section's controls: branch loss weights (with the old ``fusion_weight``) and BN sharing."""

from __future__ import annotations

from pathlib import Path

import pytest

from msad.config import load_recipe
from msad.errors import RecipeError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
TINY = RECIPES / "tiny.toml"


def test_defaults_are_the_papers() -> None:
    teacher = load_recipe(TINY).teacher
    assert teacher.loss_weights.model_dump() == {"hr": 1.0, "lr": 1.0, "fused": 0.4}
    assert teacher.bn == "shared"


def test_loss_weights_and_bn_are_recipe_fields() -> None:
    teacher = load_recipe(TINY, overrides=["teacher.loss_weights.lr=0", 'teacher.bn="per_resolution"']).teacher
    assert teacher.loss_weights.model_dump() == {"hr": 1.0, "lr": 0.0, "fused": 0.4}
    assert teacher.bn == "per_resolution"


def test_fusion_weight_still_sets_the_fused_weight() -> None:
    recipe = load_recipe(TINY, overrides=["teacher.fusion_weight=0.2"])
    assert recipe.teacher.loss_weights.fused == 0.2
    assert "fusion_weight" not in recipe.dump_toml()  # written back under its new name
    assert load_recipe(RECIPES / "coco.toml").teacher.loss_weights.fused == 0.4  # a recipe that still uses it


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["teacher.fusion_weight=0.2", "teacher.loss_weights.fused=0.3"], "old name of loss_weights.fused"),
        (["teacher.loss_weights={hr = 0.0, lr = 0.0, fused = 0.0}"], "at least one of hr, lr, fused"),
        (["teacher.loss_weights.hr=-1"], "teacher.loss_weights.hr"),
        (["teacher.loss_weights.mid=1"], "mid"),
        (['teacher.bn="per_width"'], "teacher.bn"),
    ],
)
def test_bad_values_are_one_line_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(TINY, overrides=overrides)
    assert "\n" not in str(info.value)
