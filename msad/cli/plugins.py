"""``msad plugins``: the installed plugins from their metadata, and one plugin's recipe options (no :mod:`msad.api`, no torch)."""

from __future__ import annotations

import difflib
import json
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from msad.cli.errors import one_line
from msad.cli.lazy import lazy_module
from msad.console import make_console
from msad.errors import UsageError

# imported by the first command that uses them, never by --help or --version
registry = lazy_module("msad.plugins")  # metadata and options of plugins, without msad.api (torch)

__all__ = ["register"]

_out = make_console()

def plugins(
    name: Annotated[Optional[str], typer.Argument(help="A plugin: show its recipe options (type, default); imports it.", show_default=False)] = None,
    check: Annotated[bool, typer.Option("--check", help="Import every plugin to report whether it loads (slow: torch, timm).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List backbones, necks, heads and distillation losses from every installed plugin (from metadata, nothing
    imported); [bold]msad plugins NAME[/] shows one plugin's options."""
    if name is not None:
        _plugin_detail(name, json_out=json_out)
        return
    infos = registry.list_plugins(load=check)
    if json_out:
        typer.echo(json.dumps([info.__dict__ for info in infos], indent=1, default=str))
        return
    table = Table(title="msad plugins")
    for col in ("group", "name", "distribution", "version", "status"):
        table.add_column(col)
    for info in infos:
        style = "red" if info.status.startswith("error") else ""
        table.add_row(*map(escape, (info.group, info.name, info.distribution, info.version, info.status)), style=style)
    _out.print(table)
    if not check:
        _out.print("status from metadata: --check imports each plugin to report whether it loads; "
                   "msad plugins NAME shows its options", highlight=False)


def _plugin_detail(name: str, *, json_out: bool) -> None:
    """``msad plugins NAME``: the plugin's rows (one per group holding the name) with status and typed options."""
    rows = [info for info in registry.list_plugins(load=False) if info.name == name]
    if not rows:
        known = sorted({info.name for info in registry.list_plugins(load=False)})
        hint = difflib.get_close_matches(name, known, n=1)
        raise UsageError(f"no plugin named {name!r}; installed: {', '.join(known)}"
                         + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    details = [_detail(info) for info in rows]
    if json_out:
        typer.echo(json.dumps(details, indent=1, default=str))
        return
    for detail in details:
        _out.print(escape(f"{detail['group']} {detail['name']} ({detail['distribution']} {detail['version']}): "
                          f"{detail['value']} — {detail['status']}"))
        if detail["options"]:
            table = Table(title=f"options (the recipe's table with name = \"{detail['name']}\")")
            for col in ("option", "type", "default", "declared as"):
                table.add_column(col)
            for option in detail["options"]:
                table.add_row(*(escape(option[key]) for key in ("name", "type", "default", "declared")))
            _out.print(table)


def _detail(info) -> dict:
    """One plugin's row as JSON-ready data, its options read from its builder (imported now)."""
    detail = {**info.__dict__, "options": []}
    if info.status.startswith(("disabled", "error")):
        return detail
    try:
        options = registry.plugin_options(info.group, info.name)
        declared = registry.declared_options(info.group, info.name).names()
    except Exception as err:  # noqa: BLE001 - a broken plugin is reported, never raised (PluginError names it)
        detail["status"] = f"error: {one_line(err)}"
        return detail
    detail["status"] = "ok"
    detail["options"] = [
        {"name": key, "type": _type_name(annotation), "default": "required" if default is ... else repr(default),
         "declared": declared.get(key, "")}
        for key, (annotation, default) in options.items()
    ]
    return detail


def _type_name(annotation: object) -> str:
    """``float``, ``tuple[float, ...]``, ``Literal['a', 'b']``: an annotation as a person reads it."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.command("plugins")(plugins)
