"""``msad data synth`` and ``msad data check``: the built-in synthetic data and a recipe's data preflight."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from msad.cli.app import App
from msad.cli.commands import RecipeArg, SetOpt
from msad.cli.lazy import lazy_module
from msad.console import LoopProgress, make_console
from msad.errors import DataError

# imported by the first command that uses them, never by --help or --version
api = lazy_module("msad.api")
config = lazy_module("msad.config")

__all__ = ["register"]

_out = make_console()

class SynthProfileName(str, Enum):
    """Profiles of ``msad data synth`` (see :func:`msad.data.synth.synth_profile`)."""

    small = "small"
    coco = "coco"


data_app = App(help="Datasets: generate the built-in synthetic data, check a recipe's data.", no_args_is_help=True)


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Dataset root to write.", show_default=False)],
    train: Annotated[int, typer.Option(min=0, help="Training images.")] = 400,
    val: Annotated[int, typer.Option(min=0, help="Validation images.")] = 100,
    seed: Annotated[int, typer.Option(help="Generation seed (the bytes are a function of all options).")] = 0,
    height: Annotated[Optional[int], typer.Option(min=32, help="Image height (default: 256 small, 384 coco).")] = None,
    width: Annotated[Optional[int], typer.Option(min=32, help="Image width (default: 320 small, 512 coco).")] = None,
    profile: Annotated[SynthProfileName, typer.Option(
        help="small: mostly objects under 32² (the hard case for the ×½ image); coco: COCO's object-size histogram "
        "(41 % small, 34 % medium, 25 % large), ten textured classes.",
    )] = SynthProfileName.small,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a dataset already in OUT.")] = False,
) -> None:
    """Generate the built-in synthetic COCO-format dataset (shapes on clutter, with occlusion)."""
    if (height is None) != (width is None):
        raise typer.BadParameter("give both --height and --width, or neither (the profile's size)")
    size = None if height is None or width is None else (height, width)
    summary = api.synth_data(out, train=train, val=val, seed=seed, image_size=size, force=force, profile=profile.value)
    small, medium, large = summary.size_fractions["train" if summary.images["train"] else "val"]
    _out.print(
        f"wrote {summary.images['train']} train / {summary.images['val']} val images "
        f"({summary.annotations['train']} / {summary.annotations['val']} objects) to {out}; profile {summary.profile}, "
        f"{summary.image_size[0]}×{summary.image_size[1]}, objects small/medium/large {small:.0%}/{medium:.0%}/{large:.0%}"
    )


@data_app.command("check")
def data_check(
    recipe: RecipeArg,
    set_: SetOpt = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Threads reading image headers (default: 4 per CPU, at most 32).")] = None,
    decode: Annotated[bool, typer.Option("--decode", help=(
        "Also decode every image fully, as training does (slower; finds corrupt data inside a file)."
    ))] = False,
    limit: Annotated[int, typer.Option(min=1, help="Problems listed in the table (all are counted).")] = 50,
) -> None:
    """Preflight: read every train/val image header and box; list missing, unreadable, truncated or wrongly sized
    images and bad boxes in one table (exit 1 when there is any), and print what the run will see."""
    r = config.load_recipe(recipe, overrides=set_ or [])
    with LoopProgress("data check", unit="file") as progress:  # a live line on a terminal, plain lines otherwise
        report = api.check_data(r, workers=workers, decode=decode, progress=progress.update)
    _out.print(_data_summary_table(report))
    if not report.problems:
        what = "headers, end markers" + (", full decodes" if decode else "")
        _out.print(f"no problems found ({what}, sizes and boxes of {sum(s.images for s in report.splits)} images)")
        return
    table = Table(title=f"problems ({len(report.problems)})")
    for col in ("split", "image", "problem", "detail"):
        table.add_column(col)
    for problem in report.problems[:limit]:
        table.add_row(problem.split, problem.file_name, problem.kind, problem.detail)
    _out.print(table)
    if len(report.problems) > limit:
        _out.print(f"… and {len(report.problems) - limit} more (--limit shows more)")
    counts = report.counts
    settings = [s for kinds, s in ((("missing", "unreadable", "truncated"), 'data.on_bad_image = "skip"'),
                                   (("bad box",), 'data.on_bad_annotation = "drop"')) if any(k in counts for k in kinds)]
    fix = f"fix them{', or train without them with ' + ' and '.join(settings) if settings else ''}"
    if "wrong size" in counts:
        fix += "; a wrongly sized image misplaces its boxes: fix its file or its width/height"
    listed = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    raise DataError(f"{recipe}: the data has {len(report.problems)} problem(s) ({listed}); {fix}")


def _data_summary_table(report) -> Table:
    """What the run will see: one column per split."""
    table = Table(title="what the run will see")
    table.add_column("")
    for s in report.splits:
        table.add_column(s.split, justify="right")
    rows = {
        "images (readable)": [f"{s.images} ({s.readable})" for s in report.splits],
        "instances": [str(s.instances) for s in report.splits],
        "crowd (ignored)": [str(s.crowd) for s in report.splits],
        "clipped at an edge": [str(s.clipped) for s in report.splits],
        "classes (with instances)": [f"{s.classes} ({s.classes_used})" for s in report.splits],
        "network input": [f"short side {s.input_short}" + (f" ×{s.scale:g}" if s.scale != 1 else "") for s in report.splits],
    }
    for i, name in enumerate(("small < 32²", "medium", "large ≥ 96²")):
        rows[f"{name} at the input"] = [f"{s.sizes[i]} ({s.sizes[i] / max(1, sum(s.sizes)):.0%})" for s in report.splits]
    for name, values in rows.items():
        table.add_row(name, *values)
    return table


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.add_typer(data_app, name="data")
