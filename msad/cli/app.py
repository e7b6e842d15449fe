"""The Typer app class every ``msad`` command group is made with: help that shows a type only where a value goes.

Typer (0.2x) renders the type of every option in ``--help``, flags included, so ``--force``, ``--no-draw`` and
even ``--help`` read ``<bool>`` although they take no value. A flag's help row takes its type from the option's
``metavar`` when one is set; :class:`App` gives every flag of its commands (and their ``--help``) an empty one.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["App", "Command", "Group"]


def _untyped_flags(params: list[Any]) -> list[Any]:
    """``params``, each flag given an empty metavar (so ``--help`` shows no ``<bool>`` for it)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """A Typer command whose flags show no value type in ``--help``."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The command's parameters (its ``--help`` included), flags without a type to show."""
        return _untyped_flags(super().get_params(ctx))


class Group(TyperGroup):
    """A Typer command group whose flags show no value type in ``--help``."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The group's parameters (its ``--help`` included), flags without a type to show."""
        return _untyped_flags(super().get_params(ctx))


class App(typer.Typer):
    """``typer.Typer`` whose groups and commands are :class:`Group` and :class:`Command`, rich markup on."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("rich_markup_mode", "rich")
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        """``typer.Typer.command`` with :class:`Command` as the default class."""
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)
