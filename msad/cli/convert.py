"""``msad convert slimmable`` and ``msad convert detectron2``: third-party checkpoints into msad files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from msad.cli.app import App
from msad.cli.choices import ConvertRole
from msad.cli.lazy import lazy_module
from msad.console import make_console

# imported by the first command that uses them, never by --help or --version
api = lazy_module("msad.api")
config = lazy_module("msad.config")

__all__ = ["register"]

_out = make_console()

convert_app = App(help="Convert third-party checkpoints into msad safetensors files.", no_args_is_help=True)


@convert_app.command("slimmable")
def convert_slimmable(
    source: Annotated[Path, typer.Argument(help="slimmable_networks checkpoint (.pt).", show_default=False)],
    output: Annotated[Path, typer.Argument(help="msad backbone file (.safetensors).", show_default=False)],
    width: Annotated[Optional[float], typer.Option(help="Keep one width as a plain network (default: all widths).")] = None,
) -> None:
    """Convert the public slimmable ResNet-50 ImageNet checkpoint into an msad backbone file."""
    path = api.convert_slimmable(source, output, width=width)
    _out.print(f"wrote {path}")


@convert_app.command("detectron2")
def convert_detectron2(
    source: Annotated[Path, typer.Argument(help="Original MSAD model_final.pth.", show_default=False)],
    output: Annotated[Path, typer.Argument(help="msad weights (.safetensors).", show_default=False)],
    recipe: Annotated[Path, typer.Option("--recipe", "-r", help="Recipe of the same width.", show_default=False)],
    annotations: Annotated[Optional[Path], typer.Option(help="COCO json whose categories name the classes (default: COCO 2017's 80).")] = None,
    role: Annotated[Optional[ConvertRole], typer.Option(help="teacher or student (default: detected from the keys).")] = None,
) -> None:
    """Convert an original MSAD (Detectron2) teacher or student checkpoint into msad weights."""
    path = api.convert_detectron2(source, output, recipe=config.load_recipe(recipe), annotations=annotations, role=role)
    _out.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.add_typer(convert_app, name="convert")
