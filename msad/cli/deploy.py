"""Deployment commands: ``msad export`` (a thin shell over :func:`msad.api.export.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from msad.cli.choices import ExportBranch, ExportInput
from msad.cli.lazy import lazy_module
from msad.console import make_console

__all__ = ["register"]

_out = make_console()
export_api = lazy_module("msad.api.export")


def export(
    weights: Annotated[Path, typer.Argument(help="Weights (.safetensors): baseline, teacher or student.", show_default=False)],
    out: Annotated[Path, typer.Argument(help="model.onnx, model.pt2, or a directory for both.", show_default=False)],
    input_frame: Annotated[Optional[ExportInput], typer.Option("--input", help=(
        "Student only: lr (the image is its LR input; the default) or hr (downscaled inside)."
    ), show_default=False)] = None,
    branch: Annotated[Optional[ExportBranch], typer.Option("--branch", help=(
        "Teacher only: the branch the graph runs (default: the recipe's teacher.eval_branch, as msad eval)."
    ), show_default=False)] = None,
    no_fold: Annotated[bool, typer.Option("--no-fold", help="Keep batch norm as it is (default: folded into the convs).")] = False,
) -> None:
    """Export weights as an ONNX file and/or a torch.export program: pixels in, raw head maps out.

    Normalisation (and a student's ×1/k copy with [bold]--input hr[/]) is inside; decode with
    [bold]msad.export.decode_detections[/], or run the file with [bold]msad predict --weights FILE[/].
    """
    result = export_api.export(weights, out, input_frame=input_frame, branch=branch, fold_bn=not no_fold)
    spec = result.spec
    about = [f"{spec.input_frame} input"] if (spec.input_factor, spec.box_scale) != (1, 1.0) else []
    about += [f"{spec.branch} branch"] if spec.branch else []
    _out.print(f"{', '.join([spec.role, *about])}: H and W multiples of {spec.size_divisibility}, BN folded: {spec.batchnorm_folded}")
    for path in result.files:
        diff = result.max_abs_diff.get(str(path))
        _out.print(f"wrote {path}" + (f" (max |Δ| vs eager {diff:.2e})" if diff is not None else ""))


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.command("export")(export)
