"""``msad flops``: capacity as in the paper and whole-detector GMACs (a thin shell over :func:`msad.api.capacity`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from msad.cli.commands import SetOpt
from msad.cli.lazy import lazy_module
from msad.console import make_console

# imported by the first command that uses them, never by --help or --version
api = lazy_module("msad.api")
config = lazy_module("msad.config")

__all__ = ["register"]

_out = make_console()

def flops(
    recipe: Annotated[Optional[Path], typer.Argument(help="Recipe (default: the paper's COCO architecture at its four widths).")] = None,
    set_: SetOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the table to this JSON file.")] = None,
    widths: Annotated[Optional[str], typer.Option(help=(
        "Backbone widths to sweep, e.g. 1,0.5 (default: the recipe's width; without a recipe the paper's four)."
    ))] = None,
    height: Annotated[Optional[int], typer.Option(min=32, help="HR image height (default: the recipe's data.test_size; 800 without a recipe).")] = None,
    width: Annotated[Optional[int], typer.Option(min=32, help="HR image width (default: the recipe's data.max_size; 1333 without a recipe).")] = None,
    classes: Annotated[int, typer.Option(min=1, help="Number of classes of the head.")] = 80,
) -> None:
    """Capacity as in the paper (backbone MACs relative to width 1.0, teacher = HR + LR) and whole-detector GMACs."""
    if recipe is None and set_:
        raise typer.BadParameter("--set needs a RECIPE")
    try:
        sweep = tuple(float(w) for w in widths.split(",")) if widths else None
    except ValueError:
        raise typer.BadParameter(f"--widths {widths!r}: expected comma-separated numbers, e.g. 1,0.5") from None
    r = config.load_recipe(recipe, overrides=set_ or []) if recipe else api.paper_recipe()
    if recipe is None and sweep is None:
        sweep = api.PAPER_WIDTHS
    size = (height or (r.data.test_size if recipe else 800), width or (r.data.max_size if recipe else 1333))
    report = api.capacity(r, widths=sweep, image_size=size, num_classes=classes, json_out=json_out)
    (h, w), (ph, pw) = report.image_size, report.padded_size or report.image_size
    table = Table(title=f"capacity at {h}×{w} (HR), LR ×1/{report.k}; reference {report.reference_gmacs:.1f} GMACs; "
                  f"detector GMACs on the HR image padded to {ph}×{pw}")
    for col in ("width", "capacity T/S (paper)", "backbone GMACs HR/LR", "detector GMACs HR / teacher / student", "params M HR/T/S"):
        table.add_column(col, justify="right")
    for row in report.rows:
        table.add_row(
            report.backbone if row.width is None else f"{row.width:g}",
            f"{row.teacher_capacity:.2f}x / {row.student_capacity:.2f}x",
            f"{row.backbone_gmacs_hr:.1f} / {row.backbone_gmacs_lr:.1f}",
            f"{row.baseline_gmacs:.1f} / {row.teacher_gmacs:.1f} / {row.student_gmacs:.1f}",
            f"{row.baseline_params_m:.1f} / {row.teacher_params_m:.1f} / {row.student_params_m:.1f}",
        )
    _out.print(table)
    skipped = ", ".join(f"{op} ×{n}" for op, n in sorted(report.skipped_ops.items())) or "none"
    _out.print(f"GMACs = 10^9 multiply-adds (fvcore's conventions, counted from shapes); operators not counted: {skipped}")


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.command("flops")(flops)
