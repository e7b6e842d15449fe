"""What every recipe section shares: the strict model config, the constrained value types and plugin tables.

:mod:`msad.config.recipe` (the whole recipe and its model, data and run sections) and :mod:`msad.config.stages`
(the solver and the teacher and distillation stages) both build on these; this module imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    "sync_bn_choice",
]

_STRICT = ConfigDict(extra="forbid")
#: Same values as ``msad.engine.settings.AmpMode`` / ``DeviceChoice`` (not imported: keeps msad.config light).
AmpMode = Literal["off", "bf16", "fp16"]
DeviceChoice = Literal["auto", "cpu", "cuda"]
#: Same values as ``msad.evaluation.EVAL_BACKENDS``: the COCOeval implementations.
EvalBackend = Literal["pycocotools", "faster_coco_eval"]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1)]


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

