"""What every recipe section shares: the strict model config, the constrained value types and plugin tables.

:mod:`msad.config.recipe` (the whole recipe and its model, data and run sections) and :mod:`msad.config.stages`
(the solver and the teacher and distillation stages) both build on these; this module imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticUndefined

from msad.engine.settings import (
    AmpMode,
    DeviceChoice,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)

__all__ = [
    "AmpMode",
    "DeviceChoice",
    "EvalBackend",
    "PositiveInt",
    "NonNegativeInt",
    "PositiveFloat",
    "NonNegativeFloat",
    "FiniteFloat",
    "Fraction",
    "PluginSpec",
    "settings_model",
    "sync_bn_choice",
]

_STRICT = ConfigDict(extra="forbid")
# AmpMode, DeviceChoice and the positive / non-negative numbers are the engine's (msad.engine.settings, no torch).
#: Same values as ``msad.evaluation.EVAL_BACKENDS``: the COCOeval implementations.
EvalBackend = Literal["pycocotools", "faster_coco_eval"]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1)]


def settings_model(settings: type, name: str) -> type[BaseModel]:
    """A strict recipe model with the fields, constraints and defaults of an engine settings dataclass
    (``msad.engine.settings``), each in its TOML shape: a path is a string and a tuple a list."""
    fields: dict[str, Any] = {}
    for key, info in settings.__pydantic_fields__.items():
        annotation = _toml_type(info.annotation)
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        default = info.default
        if isinstance(default, Path | tuple):
            default = str(default) if isinstance(default, Path) else list(default)
        fields[key] = (annotation, ... if default is PydanticUndefined else default)
    return create_model(name, __config__=_STRICT, __module__=__name__, **fields)


def _toml_type(annotation: Any) -> Any:
    """``annotation`` as TOML gives it: ``Path`` → ``str``, ``tuple[X, ...]`` → ``list[X]``."""
    if annotation is Path:
        return str
    args = get_args(annotation)
    if get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list[args[0]]  # type: ignore[valid-type]
    return annotation


def sync_bn_choice(value: Any) -> Any:
    """Accept a ``sync_bn`` value (``true``, ``false`` or ``"auto"``; ``None`` passes for "not set")."""
    if value is None or isinstance(value, bool) or value == "auto":
        return value
    raise ValueError(f'must be true, false or "auto", got {value!r}')


class PluginSpec(BaseModel):
    """A plugin choice: ``name`` plus the builder's options.

    In TOML every key of the table except ``name`` is an option (``[model.backbone] name = "slimmable_resnet"
    width = 0.5``); an explicit ``options`` sub-table is accepted too. A builder option literally called
    ``name`` or ``options`` cannot be set.
    """

    model_config = _STRICT
    name: str
    options: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _flat_options(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        options = data.pop("options", {})
        if not isinstance(options, Mapping):
            options = {"options": options}
        flat = {key: value for key, value in data.items() if key != "name"}
        out: dict[str, Any] = {"options": {**options, **flat}}
        if "name" in data:
            out["name"] = data["name"]
        return out


def _default_names(data: Any, defaults: Mapping[str, str]) -> Any:
    """Give a plugin table written without ``name`` its default plugin name."""
    if isinstance(data, Mapping):
        data = dict(data)
        for key, name in defaults.items():
            if isinstance(data.get(key), Mapping) and "name" not in data[key]:
                data[key] = {"name": name, **data[key]}
    return data

