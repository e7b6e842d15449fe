"""``msad recipe show`` and ``msad recipe validate``: the resolved recipe (reads :mod:`msad.config` only, no torch)."""

from __future__ import annotations

import typer

from msad.cli.app import App
from msad.cli.commands import RecipeArg, SetOpt
from msad.cli.lazy import lazy_module
from msad.console import make_console

# imported by the first command that uses them, never by --help or --version
config = lazy_module("msad.config")

__all__ = ["register"]

_out = make_console()

recipe_app = App(help="Recipes: show the resolved recipe, or validate it.", no_args_is_help=True)


@recipe_app.command("show")
def recipe_show(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Print the resolved recipe (base merged, overrides applied, defaults filled) as TOML."""
    typer.echo(config.load_recipe(recipe, overrides=set_ or []).dump_toml())


@recipe_app.command("validate")
def recipe_validate(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Check a recipe; exit 0 when valid, 3 with the first problem otherwise."""
    config.load_recipe(recipe, overrides=set_ or [])
    _out.print(f"{recipe}: valid")


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.add_typer(recipe_app, name="recipe")
