"""The ``msad`` command: a Typer app whose commands are thin shells over :mod:`msad.api`.

Errors a user can fix are printed as one line on stderr with a non-zero exit code and no traceback
(``msad --debug …`` shows it): 1 runtime failure, 2 usage, 3 invalid recipe, 130 Ctrl-C, 128 + N a signal N
(143 SIGTERM, 138 SIGUSR1: training checkpoints first, see :mod:`msad.engine.preemption`).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Annotated

import typer

import msad
from msad.cli import commands, compare, convert, data, deploy, flops, plugins, recipe
from msad.cli.app import App
from msad.cli.errors import exit_code, one_line
from msad.errors import Terminated

__all__ = ["app", "main"]

app = App(
    name="msad",
    help="Low-resolution object detection by Multi-Scale Aligned Distillation (MSAD, CVPR 2021).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"msad {msad.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    """Train, distill, evaluate and deploy MSAD low-resolution detectors."""
    _state["debug"] = debug


commands.register(app)
flops.register(app)
plugins.register(app)
data.register(app)
recipe.register(app)
convert.register(app)
compare.register(app)
deploy.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and turn known errors into one line and an exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    _stop_on_signals()
    try:
        app(args=args, prog_name="msad", standalone_mode=True)
    except SystemExit:
        raise
    except Terminated as err:
        typer.echo(f"msad: stopped by {signal.Signals(err.signum).name}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("msad: interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - the CLI's single error boundary
        if _state["debug"] or "--debug" in args:
            raise
        typer.echo(f"msad: error: {one_line(err)}", err=True)
        sys.exit(exit_code(err))


def _stop_on_signals() -> None:
    """SIGTERM (docker stop, a scheduler) and SIGUSR1 unwind the command like Ctrl-C (:class:`Terminated`), so it
    ends with one line naming the last checkpoint and exit status 128 + the signal; training installs its own
    handlers meanwhile, which checkpoint at the next step boundary first."""
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, _raise_terminated)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


if __name__ == "__main__":  # pragma: no cover
    main()
