"""msad.config: pydantic recipe models, TOML loading with ``base =`` inheritance and ``--set`` overrides."""

from msad.config.common import PluginSpec
from msad.config.loading import apply_overrides, deep_merge, load_recipe, parse_override, recipe_from_dict
from msad.config.recipe import DataRecipe, EvalRecipe, LossRecipe, ModelRecipe, PostprocessRecipe, Recipe, RunRecipe
from msad.config.stages import DistillRecipe, SolverOverrides, SolverRecipe, Stage, TeacherRecipe

__all__ = [
    "DataRecipe",
    "DistillRecipe",
    "EvalRecipe",
    "LossRecipe",
    "ModelRecipe",
    "PluginSpec",
    "PostprocessRecipe",
    "Recipe",
    "RunRecipe",
    "SolverOverrides",
    "SolverRecipe",
    "Stage",
    "TeacherRecipe",
    "apply_overrides",
    "deep_merge",
    "load_recipe",
    "parse_override",
    "recipe_from_dict",
]
