"""Lazy imports for the CLI: ``msad --help`` and ``msad --version`` must not pay for torch.

The command modules bind ``api = lazy_module("msad.api")`` at import time; the real module is imported on the
first attribute access, i.e. inside the command that needs it. (A stand-in object, deliberately not a
``sys.modules`` entry: torch walks ``sys.modules`` while it imports, and a half-imported placeholder there would
be executed in the middle of torch's own import.)
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["LazyModule", "lazy_module"]


class LazyModule:
    """Stands for the module ``name``; imports it on the first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.load(), attribute)

    def load(self) -> ModuleType:
        """The module itself (imported now if it was not yet)."""
        return importlib.import_module(self._name)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    """A :class:`LazyModule` for ``name`` (typed ``Any``: it answers every attribute of the module)."""
    return LazyModule(name)
