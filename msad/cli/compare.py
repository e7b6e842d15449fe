"""``msad compare``: weights files side by side — AP, backbone capacity, measured images/s (thin shell over the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from msad.cli.commands import rows_table
from msad.cli.lazy import lazy_module
from msad.console import make_console

__all__ = ["register"]

_out = make_console()
api_compare = lazy_module("msad.api.compare")
config = lazy_module("msad.config")


def compare(
    weights: Annotated[list[Path], typer.Argument(help="Weights files (.safetensors), one row each.", show_default=False)],
    recipe: Annotated[Optional[Path], typer.Option("--recipe", "-r", help="Recipe whose validation data to use (default: each file's own).")] = None,
    name: Annotated[Optional[list[str]], typer.Option("--name", "-n", help="Row name, once per weights file, in order.")] = None,
    timing_images: Annotated[int, typer.Option(min=1, help="Validation images timed per file.")] = 16,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch (evaluation and timing).")] = 4,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the rows to this JSON file.")] = None,
) -> None:
    """AP, backbone capacity and measured images/s of several weights, side by side (e.g. LR baseline, MSAD student, HR baseline)."""
    r = config.load_recipe(recipe) if recipe is not None else None
    rows = api_compare.compare(weights, recipe=r, names=name or None, timing_images=timing_images,
                               batch_size=batch_size, json_out=json_out)
    table_rows = {
        row.name: {"input": row.input, "AP": row.metrics.get("AP"), "AP50": row.metrics.get("AP50"),
                   "APs": row.metrics.get("APs"), "capacity": f"{row.capacity:.2f}x", "images/s": row.images_per_s}
        for row in rows
    }
    devices = ", ".join(sorted({row.device for row in rows}))
    _out.print(rows_table("side by side", table_rows))
    _out.print(f"capacity: backbone multiply-adds relative to S-R50 width 1.0 on the HR image (the paper's column)\n"
               f"images/s: forward + decoding + NMS, batch {batch_size}, measured here on {devices}")


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("compare")(compare)
