"""Reading recipes: TOML, one level of ``base = "other.toml"`` inheritance, ``--set dotted.key=value`` overrides.

Every failure is a :class:`msad.errors.RecipeError` whose message is one line:
``<file>: <dotted.path>: <message>``, with a close-match suggestion for unknown keys.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from msad._pydantic_errors import describe_validation_error, dotted, suggest
from msad.config.common import PluginSpec
from msad.config.recipe import Recipe, known_keys, model_class_at
from msad.errors import MsadError, RecipeError

__all__ = ["load_recipe", "recipe_from_dict", "apply_overrides", "parse_override", "deep_merge"]


def load_recipe(path: str | Path, *, overrides: Iterable[str] = ()) -> Recipe:
    """Load, merge, override and validate a recipe file (plugin options included).

    Args:
        path: the recipe TOML file.
        overrides: ``dotted.key=value`` strings (``--set``); the value is read as a TOML value
            (``5``, ``0.5``, ``true``, ``[1, 2]``, ``"text"``), or kept as a plain string if it is not one.

    Raises:
        RecipeError: missing file, TOML syntax error (with the line), a base that has its own base, a bad
            override, or any validation error.
    """
    path = Path(path)
    data = _read_toml(path)
    base = data.pop("base", None)
    sources = [str(path)]
    if base is not None:
        if not isinstance(base, str):
            raise RecipeError(f"{path}: base: expected a file name, got {base!r}")
        base_path = path.parent / base
        base_data = _read_toml(base_path)
        if "base" in base_data:
            raise RecipeError(
                f"{base_path}: a base recipe cannot have its own base (only one level of base = is supported)"
            )
        data = deep_merge(base_data, data)
        sources.append(str(base_path))
    overrides = list(overrides)
    merged = apply_overrides(data, overrides)
    try:
        recipe = recipe_from_dict(merged, source=str(path))
    except RecipeError as exc:
        raise RecipeError(_blame_override(str(exc), str(path), overrides)) from None
    recipe._source_files = tuple(sources)
    return recipe


def recipe_from_dict(data: Mapping[str, Any], *, source: str | None = None, check_plugins: bool = True) -> Recipe:
    """Validate a recipe given as a (TOML-shaped) dict; ``source`` prefixes error messages.

    Raises:
        RecipeError: one line for the first validation error (``(+N more)`` when there are several).
        PluginError: a plugin named by the recipe fails to load.
    """
    prefix = f"{source}: " if source else ""
    try:
        recipe = Recipe.model_validate(dict(data))
    except ValidationError as exc:
        raise RecipeError(prefix + describe_validation_error(exc, known_keys=known_keys)) from None
    if check_plugins:
        try:
            recipe.check_plugins()
        except MsadError as exc:
            raise type(exc)(prefix + str(exc)) from None
    return recipe


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a TOML text file (it is not UTF-8 text; binary file?)") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _blame_override(message: str, source: str, overrides: list[str]) -> str:
    """``message`` (``"<file>: <dotted.path>: …"``) credited to the ``--set`` that wrote the path, if one did."""
    detail = message.removeprefix(f"{source}: ")
    field = detail.split(":", 1)[0]
    for item in reversed(overrides):
        key = item.split("=", 1)[0].strip()
        if field == key or field.startswith((key + ".", key + "[")):
            return f"--set {item}: {detail}"
    return message


def deep_merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``child`` over ``base``: tables merge key by key, any other value replaces.

    A plugin table whose ``name`` differs from the base table's (both written) replaces it, so the old plugin's options do not leak in.
    """
    out = dict(base)
    for key, value in child.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            same_plugin = "name" not in value or "name" not in old or value["name"] == old["name"]
            out[key] = deep_merge(old, value) if same_plugin else dict(value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``"a.b=v"`` into ``(["a", "b"], value)``, ``v`` read as a TOML value or else a plain string.

    Raises:
        RecipeError: no ``=`` or an empty key part.
    """
    if "=" not in item:
        raise RecipeError(f"--set {item!r}: expected dotted.key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise RecipeError(f"--set {item!r}: malformed key {key.strip()!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def _check_override_path(parts: list[str], item: str) -> None:
    """Refuse override keys the schema does not have (plugin options are checked later, with the plugin)."""
    if parts[0] == "base":
        raise RecipeError(f"--set {item}: base cannot be overridden")
    for i, part in enumerate(parts):
        cls = model_class_at(tuple(parts[:i]))
        if cls is PluginSpec:
            return
        if cls is None:
            raise RecipeError(f"--set {item}: {dotted(parts[:i])} is not a table")
        if part not in cls.model_fields:
            hint = suggest(part, cls.model_fields)
            message = f"--set {item}: {dotted(parts[: i + 1])}: unknown key '{part}'"
            raise RecipeError(message + (f", did you mean '{hint}'?" if hint else ""))


def _switch_plugin(data: dict[str, Any], path: list[str], name: Any) -> None:
    """Set the plugin table at ``path`` to plugin ``name``, dropping its options when the name changes."""
    node = data
    for part in path[:-1]:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, Mapping) else {}
        node = node[part]
    table = node.get(path[-1])
    if not isinstance(table, Mapping) or table.get("name") != name:
        node[path[-1]] = {"name": name}


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a TOML-shaped recipe dict (a new dict is returned).

    Raises:
        RecipeError: malformed override or unknown key.
    """
    out = deep_merge({}, data)
    parsed = [(item, *parse_override(item)) for item in overrides]
    for item, parts, value in parsed:  # a new plugin name first: the old plugin's options do not carry over
        if parts[-1] == "name" and model_class_at(tuple(parts[:-1])) is PluginSpec:
            _check_override_path(parts, item)
            _switch_plugin(out, parts[:-1], value)
    for item, parts, value in parsed:
        _check_override_path(parts, item)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[parts[-1]] = value
    return out
