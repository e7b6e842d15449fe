"""What a plugin declares about its own options, so that msad never assumes an option's name.

A builder says which of its options name initialisation files, which freezes stages, which only change training
and which is the network's width, with :func:`declare_options`::

    @declare_options(init_files=("pretrained_path",), freeze="frozen_stages", training=("norm",), width="width")
    def build_my_backbone(*, width: float = 1.0, pretrained_path: str | None = None, frozen_stages: int = 0,
                          norm: str = "bn") -> nn.Module: ...

msad reads the declaration through the registry (:func:`msad.plugins.declared_options`): it strips the
initialisation files when a model is rebuilt from a checkpoint, leaves the declared options out when it compares a
checkpoint's architecture with a recipe's, refuses frozen stages without an initialisation file, and records the
width in checkpoint metadata. A builder without a declaration declares nothing: every option is architecture.

A leaf module (no torch, nothing of msad): the built-in plugins, which sit below :mod:`msad.plugins`, import it
from here; third-party plugins may import it as ``msad.plugins.declare_options``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["OptionDeclaration", "declare_options", "declaration_of"]

#: The builder attribute holding its :class:`OptionDeclaration`.
ATTRIBUTE = "__msad_options__"

_Builder = TypeVar("_Builder", bound=Callable[..., Any])


@dataclass(frozen=True)
class OptionDeclaration:
    """Which of a plugin builder's options play a part msad must know of (each a keyword parameter of the builder).

    Attributes:
        init_files: options naming a file of initial weights. Opened when training starts, never when a model is
            rebuilt from a checkpoint (its own tensors replace them); not architecture.
        freeze: the option giving how many stages are frozen (0: none). Above 0 with no ``init_files`` option set,
            training a baseline or teacher is refused (the frozen stages would keep their random values); not
            architecture.
        training: other options that change how the plugin trains but not the shapes of its weights (e.g. a frozen
            batch norm); not architecture.
        width: the option that is the network's width multiplier (checkpoint metadata ``width``, ``msad flops``).
    """

    init_files: tuple[str, ...] = ()
    freeze: str | None = None
    training: tuple[str, ...] = ()
    width: str | None = None

    def names(self) -> dict[str, str]:
        """``{option: what it is declared as}`` (``init file``, ``freeze``, ``training``, ``width``)."""
        kinds = {name: "init file" for name in self.init_files}
        kinds |= {name: "training" for name in self.training}
        kinds |= {name: kind for name, kind in ((self.freeze, "freeze"), (self.width, "width")) if name is not None}
        return kinds

    @property
    def not_architecture(self) -> frozenset[str]:
        """Options that do not shape the weights: left out when a checkpoint's architecture is compared."""
        return frozenset((*self.init_files, *self.training, *((self.freeze,) if self.freeze else ())))


def declare_options(
    *, init_files: Sequence[str] = (), freeze: str | None = None, training: Sequence[str] = (), width: str | None = None,
) -> Callable[[_Builder], _Builder]:
    """Decorator recording a builder's :class:`OptionDeclaration` (arguments as its attributes).

    Raises:
        TypeError: when the builder is decorated (so ``msad plugins --check`` reports the plugin as broken): a
            declared name that is not a keyword parameter of the builder, a name declared twice, or a single
            string given for ``init_files`` / ``training`` (a tuple of names is expected).
    """
    for what, names in (("init_files", init_files), ("training", training)):
        if isinstance(names, str):
            raise TypeError(f"declare_options({what}={names!r}): give a tuple of option names, e.g. ({names!r},)")
    declaration = OptionDeclaration(tuple(init_files), freeze, tuple(training), width)

    def decorate(builder: _Builder) -> _Builder:
        _check(builder, declaration)
        setattr(builder, ATTRIBUTE, declaration)
        return builder

    return decorate


def _check(builder: Callable[..., Any], declaration: OptionDeclaration) -> None:
    """Refuse a declaration naming something other than the builder's keyword parameters, or a name twice."""
    where = getattr(builder, "__qualname__", repr(builder))
    keywords = [
        p.name for p in inspect.signature(builder).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    declared = [*declaration.init_files, *declaration.training, declaration.freeze, declaration.width]
    for name in (n for n in declared if n is not None):
        if name not in keywords:
            raise TypeError(
                f"declare_options on {where}: {name!r} is not a keyword parameter of the builder "
                f"(its parameters: {', '.join(keywords) or 'none'})"
            )
        if declared.count(name) > 1:
            raise TypeError(f"declare_options on {where}: {name!r} is declared more than once")


def declaration_of(builder: Callable[..., Any]) -> OptionDeclaration:
    """The builder's declaration (an empty one when it has none).

    Raises:
        TypeError: the builder's declaration attribute is not an :class:`OptionDeclaration`.
    """
    declaration = getattr(builder, ATTRIBUTE, None)
    if declaration is None:
        return OptionDeclaration()
    if not isinstance(declaration, OptionDeclaration):
        raise TypeError(f"{ATTRIBUTE} is a {type(declaration).__name__}, not set by msad's declare_options")
    return declaration
