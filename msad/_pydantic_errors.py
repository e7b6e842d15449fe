"""Turn a pydantic ``ValidationError`` into one readable line with a dotted path and a did-you-mean hint.

Shared by the recipe loader (:mod:`msad.config`) and the plugin option validation (:mod:`msad.plugins`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import ValidationError

__all__ = ["dotted", "suggest", "describe_validation_error"]

#: ``known_keys(loc)`` returns the keys accepted at the container ``loc`` points into, or ``None`` if unknown.
KnownKeys = Callable[[tuple[Any, ...]], Iterable[str] | None]


def dotted(loc: Sequence[Any]) -> str:
    """``("data", "train_sizes", 0)`` → ``"data.train_sizes[0]"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def suggest(key: str, known: Iterable[str]) -> str | None:
    """The closest known key to ``key`` (difflib), or ``None``."""
    matches = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _message(error: dict[str, Any], known_keys: KnownKeys | None, noun: str) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "extra_forbidden" and loc:
        key = str(loc[-1])
        known = known_keys(loc[:-1]) if known_keys else None
        hint = suggest(key, known) if known is not None else None
        if hint is not None:
            return f"unknown {noun} '{key}', did you mean '{hint}'?"
        if known is not None:
            return f"unknown {noun} '{key}' (expected one of: {', '.join(sorted(known)) or 'none'})"
        return f"unknown {noun} '{key}'"
    if kind == "missing":
        return f"missing required {noun}"
    msg = str(error["msg"])
    if kind == "value_error" and msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if kind == "assertion_error" and msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, ") :]
    msg = msg.split(", unable to")[0].split(", got a number")[0]
    msg = msg[:1].lower() + msg[1:]
    if "input" in error and not isinstance(error["input"], dict):
        msg += f" (got {_short_repr(error['input'])})"
    return msg


def describe_validation_error(
    exc: ValidationError,
    *,
    prefix: Sequence[str] = (),
    known_keys: KnownKeys | None = None,
    noun: str = "key",
) -> str:
    """One line for ``exc``: ``<dotted.path>: <message>`` for its first error, plus ``(+N more)``.

    Args:
        exc: the pydantic error.
        prefix: path parts prepended to every error location (e.g. ``("model", "backbone")``).
        known_keys: callback giving the accepted keys at a location, for did-you-mean hints on unknown keys.
        noun: what a key is called in messages (``"key"``, ``"option"``).
    """
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = dotted((*prefix, *first["loc"]))
    line = f"{path}: {_message(first, known_keys, noun)}" if path else _message(first, known_keys, noun)
    if len(errors) > 1:
        line += f" (+{len(errors) - 1} more)"
    return line
