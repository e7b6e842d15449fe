"""Lazy entry-point registry for backbones, necks, heads and distillation losses.

Built-ins register through msad's own entry points (``pyproject.toml``), exactly like third-party plugins.
Nothing is imported until it is asked for: :func:`get_builder` loads one entry point, :func:`list_plugins`
reads the entry points' metadata (and, asked to check them, loads each in isolation and reports failures instead
of raising them), so a broken plugin never breaks the CLI and listing plugins never imports torch or timm.

``MSAD_PLUGINS``, when set, is a comma-separated allow-list of third-party *distribution* names; msad's
built-ins always load, and ``MSAD_PLUGINS=""`` means built-ins only.

A plugin's options are its builder's typed keyword arguments minus the framework arguments msad supplies
itself (:data:`FRAMEWORK_ARGS`); :func:`validate_options` checks recipe options against them with pydantic.
"""

from __future__ import annotations

import inspect
import os
import re
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ConfigDict, ValidationError, create_model

from msad._pydantic_errors import describe_validation_error, suggest
from msad.errors import PluginError, RecipeError

__all__ = [
    "GROUPS",
    "FRAMEWORK_ARGS",
    "BUILTIN_DISTRIBUTION",
    "PluginInfo",
    "get_builder",
    "call_builder",
    "available",
    "list_plugins",
    "builder_options",
    "plugin_options",
    "validate_options",
]

#: Entry-point groups msad reads, mapped to the singular noun used in messages.
GROUPS: dict[str, str] = {
    "msad.backbones": "backbone",
    "msad.necks": "neck",
    "msad.heads": "head",
    "msad.distill_losses": "distill loss",
}

#: Builder arguments msad supplies itself, per group; they are not recipe options.
FRAMEWORK_ARGS: dict[str, tuple[str, ...]] = {
    "msad.backbones": (),
    "msad.necks": ("in_features", "levels"),
    "msad.heads": ("in_channels", "num_classes", "levels"),
    "msad.distill_losses": (),
}

#: Distribution whose entry points are the built-ins (always loaded, win name clashes).
BUILTIN_DISTRIBUTION = "msad"

@dataclass(frozen=True)
class PluginInfo:
    """One row of ``msad plugins``.

    Attributes:
        group: entry-point group (``msad.backbones`` …).
        name: plugin name used in recipes.
        value: entry-point target, ``module:attribute``.
        distribution: distribution providing it (``msad`` for built-ins, ``"?"`` if unknown).
        version: that distribution's version (``""`` if unknown).
        status: ``"ok"``, ``"error: <one line>"`` or ``"disabled (MSAD_PLUGINS)"``; ``"installed"`` when it was
            listed without importing it (``list_plugins(load=False)``).
    """

    group: str
    name: str
    value: str
    distribution: str
    version: str
    status: str


@dataclass(frozen=True)
class _Entry:
    ep: EntryPoint
    distribution: str
    version: str
    builtin: bool
    state: str  # "active" | "disabled" | "duplicate:<winner distribution>"


def _normalize(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _noun(group: str) -> str:
    return GROUPS.get(group, group)


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise PluginError(f"unknown plugin group {group!r}; expected one of: {', '.join(GROUPS)}")


def _allow_list() -> set[str] | None:
    """The distributions ``MSAD_PLUGINS`` enables (``None``: all).

    Raises:
        PluginError: it names a distribution that provides no msad plugin (a typo would silently disable it).
    """
    raw = os.environ.get("MSAD_PLUGINS")
    if raw is None:
        return None
    named = [part.strip() for part in raw.split(",") if part.strip()]
    installed = _plugin_distributions()
    unknown = [name for name in named if _normalize(name) not in installed | {BUILTIN_DISTRIBUTION}]
    if unknown:
        others = sorted(installed - {BUILTIN_DISTRIBUTION})
        hint = suggest(unknown[0], others)
        raise PluginError(
            f"MSAD_PLUGINS names {', '.join(repr(n) for n in unknown)}, not an installed distribution with msad "
            f"plugins; installed: {', '.join(others) or 'none besides msad'}"
            + (f" (did you mean '{hint}'?)" if hint else "")
        )
    return {_normalize(name) for name in named}


def _plugin_distributions() -> set[str]:
    """Normalised names of the installed distributions that register msad plugins."""
    found = set()
    for group in GROUPS:
        for ep in entry_points(group=group):
            name = getattr(getattr(ep, "dist", None), "name", None)
            if name:
                found.add(_normalize(name))
    return found


def _entries(group: str) -> list[_Entry]:
    """Every entry point of ``group`` with its distribution and resolved state (active/disabled/duplicate)."""
    allowed = _allow_list()
    found: list[_Entry] = []
    seen: set[tuple[str, str, str]] = set()
    for ep in entry_points(group=group):
        dist = getattr(ep, "dist", None)
        dist_name = getattr(dist, "name", None) or "?"
        version = str(getattr(dist, "version", "") or "")
        key = (ep.name, ep.value, _normalize(dist_name))
        if key in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(key)
        builtin = _normalize(dist_name) == BUILTIN_DISTRIBUTION
        found.append(_Entry(ep, dist_name, version, builtin, "active"))
    # Built-ins first so that they win name clashes; otherwise keep discovery order.
    found.sort(key=lambda e: not e.builtin)
    winners: dict[str, str] = {}
    resolved: list[_Entry] = []
    for e in found:
        state = "active"
        if not e.builtin and allowed is not None and _normalize(e.distribution) not in allowed:
            state = "disabled"
        elif e.ep.name in winners:
            state = f"duplicate:{winners[e.ep.name]}"
        else:
            winners[e.ep.name] = e.distribution
        resolved.append(_Entry(e.ep, e.distribution, e.version, e.builtin, state))
    return resolved


def available(group: str) -> list[str]:
    """Sorted names of the enabled plugins in ``group`` (nothing is imported)."""
    _check_group(group)
    return sorted(e.ep.name for e in _entries(group) if e.state == "active")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _try_load(entry: _Entry) -> tuple[Callable[..., Any] | None, str]:
    """Import one entry point in isolation: ``(builder, "")`` or ``(None, one-line reason)``; never raises."""
    try:
        builder = entry.ep.load()
    except SystemExit as exc:  # a plugin that calls sys.exit on import must not end msad
        return None, f"called sys.exit({exc.code!r}) while importing"
    except Exception as exc:  # noqa: BLE001 - a plugin may fail in any way; report, never crash
        return None, _one_line(exc)
    if not callable(builder):
        return None, "not callable"
    return builder, ""


def _load(entry: _Entry) -> Callable[..., Any]:
    """Import one entry point; raise :class:`PluginError` naming distribution and version on failure."""
    builder, reason = _try_load(entry)
    if builder is None:
        where = f"{entry.distribution} {entry.version}".strip()
        raise PluginError(
            f"{_noun(entry.ep.group)} '{entry.ep.name}' ({entry.ep.value}, from {where}) failed to load: {reason}"
        )
    return builder


def get_builder(group: str, name: str) -> Callable[..., Any]:
    """Load and return the builder registered as ``name`` in ``group`` (only that entry point is imported).

    Raises:
        PluginError: unknown group or name (with the available names and a close match), a plugin disabled by
            ``MSAD_PLUGINS``, or a plugin that fails to import or is not callable.
    """
    _check_group(group)
    entries = _entries(group)
    for entry in entries:
        if entry.ep.name == name and entry.state == "active":
            return _load(entry)
    noun = _noun(group)
    disabled = [e for e in entries if e.ep.name == name and e.state == "disabled"]
    if disabled:
        raise PluginError(
            f"{noun} '{name}' is provided by {disabled[0].distribution}, which MSAD_PLUGINS does not enable"
        )
    raise PluginError(_unknown_message(noun, name, available(group)))


def call_builder(group: str, name: str, /, **kwargs: Any) -> Any:
    """``get_builder(group, name)(**kwargs)``, where plugin code that calls ``sys.exit`` cannot end msad silently.

    Raises:
        PluginError: what :func:`get_builder` raises, or the builder raised ``SystemExit`` (naming the entry point
            and its distribution).
    """
    builder = get_builder(group, name)
    try:
        return builder(**kwargs)
    except SystemExit as exc:
        entry = next(e for e in _entries(group) if e.ep.name == name and e.state == "active")
        where = f"{entry.distribution} {entry.version}".strip()
        raise PluginError(
            f"{_noun(group)} '{name}' ({entry.ep.value}, from {where}) called sys.exit({exc.code!r}) while building; "
            "report it to the plugin's authors, or use another plugin"
        ) from None


def _unknown_message(noun: str, name: str, names: list[str]) -> str:
    message = f"unknown {noun} '{name}'; available: {', '.join(names) or 'none'}"
    hint = suggest(name, names)
    return message + (f" (did you mean '{hint}'?)" if hint else "")


def list_plugins(groups: tuple[str, ...] | None = None, *, load: bool = True) -> list[PluginInfo]:
    """Every registered plugin with its load status; each is loaded in isolation and failures are reported.

    Args:
        groups: groups to list (default: all of :data:`GROUPS`), in that order; plugins sorted by name.
        load: import each enabled plugin to report whether it loads; ``False`` reads only the entry points'
            metadata (nothing imported) and reports an enabled plugin as ``"installed"``.
    """
    rows: list[PluginInfo] = []
    for group in groups or tuple(GROUPS):
        _check_group(group)
        for entry in sorted(_entries(group), key=lambda e: (e.ep.name, not e.builtin)):
            if entry.state == "disabled":
                status = "disabled (MSAD_PLUGINS)"
            elif entry.state.startswith("duplicate:"):
                status = f"error: duplicate name, also provided by {entry.state.split(':', 1)[1]}"
            elif not load:
                status = "installed"
            else:
                builder, reason = _try_load(entry)
                status = "ok" if builder is not None else f"error: {reason}"
            rows.append(PluginInfo(group, entry.ep.name, entry.ep.value, entry.distribution, entry.version, status))
    return rows


def _type_hints(builder: Callable[..., Any]) -> dict[str, Any]:
    target = builder.__init__ if isinstance(builder, type) else builder
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations fall back to Any
        return {}


def builder_options(
    builder: Callable[..., Any], *, framework_args: tuple[str, ...] | list[str] = ()
) -> dict[str, tuple[Any, Any]]:
    """A builder's recipe options: ``{name: (annotation, default)}`` from its signature.

    Keyword-capable parameters (keyword-only or positional-or-keyword) are options, except those in
    ``framework_args`` and ``*args``/``**kwargs``; a missing annotation becomes ``Any``, a missing default
    ``...`` (required).
    """
    hints = _type_hints(builder)
    options: dict[str, tuple[Any, Any]] = {}
    for param in inspect.signature(builder).parameters.values():
        if param.kind not in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            continue
        if param.name in framework_args or param.name in ("self", "cls"):
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        options[param.name] = (annotation, default)
    return options


def plugin_options(group: str, name: str) -> dict[str, tuple[Any, Any]]:
    """The recipe options of plugin ``name`` of ``group``: ``{option: (annotation, default or ...)}`` from its
    builder's signature, without the framework arguments and private (``_``) parameters — what
    :func:`validate_options` checks a recipe's table against. Imports that plugin only.

    Raises:
        PluginError: unknown group or name, or the plugin fails to load.
    """
    options = builder_options(get_builder(group, name), framework_args=FRAMEWORK_ARGS[group])
    return {key: value for key, value in options.items() if not key.startswith("_")}


def validate_options(group: str, name: str, options: Mapping[str, Any], *, path: str) -> dict[str, Any]:
    """Validate recipe ``options`` for plugin ``name`` of ``group`` against its builder's typed kwargs.

    Args:
        group: entry-point group.
        name: plugin name.
        options: the options given in the recipe (without ``name``).
        path: dotted recipe path of the plugin table, e.g. ``"model.backbone"``, used in messages.

    Returns:
        The given options, coerced to the builder's annotations (defaults are not added).

    Raises:
        RecipeError: unknown plugin name, unknown option (with a close match), wrong type or framework
            argument given as an option.
        PluginError: the plugin exists but fails to load.
    """
    _check_group(group)
    names = available(group)
    if name not in names:
        try:
            get_builder(group, name)  # disabled plugins get their own message
        except PluginError as exc:
            raise RecipeError(f"{path}.name: {exc}") from None
    framework = FRAMEWORK_ARGS[group]
    for key in options:
        if key in framework:
            raise RecipeError(f"{path}.{key}: '{key}' is supplied by msad and cannot be set in a recipe")
    fields = plugin_options(group, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # field names shadowing BaseModel attributes
        model = create_model(  # type: ignore[call-overload]
            f"{_noun(group).replace(' ', '_')}_{name}_options",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=()),
            **fields,
        )
    try:
        validated = model.model_validate(dict(options))
    except ValidationError as exc:
        message = describe_validation_error(
            exc, prefix=tuple(path.split(".")), known_keys=lambda _loc: fields.keys(), noun="option"
        )
        raise RecipeError(message) from None
    return {key: getattr(validated, key) for key in options}
