"""Pydantic models of a recipe: the TOML file that describes one experiment.

Every model forbids unknown keys. Plugin tables (``[model.backbone]``, ``[model.neck]``, ``[model.head]``,
``[distill.loss]``) hold a ``name`` and the plugin's options as sibling keys; those options are checked against
the plugin builder's typed keyword arguments by :meth:`Recipe.check_plugins` (called by the loader).

Data paths are kept as written; relative paths are resolved against the *current working directory* when the
data is opened (as with any command-line path), not against the recipe file.

The solver and the teacher/distillation stage sections are declared in :mod:`msad.config.stages`, the shared
value types and :class:`PluginSpec` in :mod:`msad.config.common`; both are re-exported here.
"""

from __future__ import annotations

import inspect
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python

from msad._pydantic_errors import describe_validation_error
from msad.config.common import (  # noqa: F401 - AmpMode and PluginSpec are re-exported
    _STRICT,
    AmpMode,
    DeviceChoice,
    EvalBackend,
    FiniteFloat,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PluginSpec,
    PositiveFloat,
    PositiveInt,
    _default_names,
    settings_model,
    sync_bn_choice,
)
from msad.config.stages import (  # noqa: F401 - the Recipe's sections; all re-exported
    DistillRecipe,
    SolverOverrides,
    SolverRecipe,
    Stage,
    TeacherLossWeights,
    TeacherRecipe,
)
from msad.engine.settings import RunSettings

__all__ = [
    "PluginSpec",
    "LossRecipe",
    "PostprocessRecipe",
    "ModelRecipe",
    "DataRecipe",
    "SolverRecipe",
    "SolverOverrides",
    "TeacherLossWeights",
    "TeacherRecipe",
    "DistillRecipe",
    "RunRecipe",
    "Recipe",
    "Stage",
    "known_keys",
    "model_class_at",
]

#: Metrics ``run.best_metric`` may name (what the COCO evaluation reports).
BEST_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


class LossRecipe(BaseModel):
    """FCOS loss hyper-parameters (focal loss α/γ, centre-sampling radius in strides)."""

    model_config = _STRICT
    focal_alpha: Fraction = 0.25
    focal_gamma: NonNegativeFloat = 2.0
    center_radius: PositiveFloat = 1.5


class PostprocessRecipe(BaseModel):
    """FCOS inference: score threshold, per-level top-k before NMS, class-wise NMS IoU, detections per image."""

    model_config = _STRICT
    score_threshold: Annotated[float, Field(ge=0, lt=1)] = 0.05
    pre_nms_topk: PositiveInt = 1000
    nms_threshold: Annotated[float, Field(gt=0, le=1)] = 0.6
    max_detections: PositiveInt = 100


class ModelRecipe(BaseModel):
    """The detector: input normalisation (RGB, 0–255) and the backbone / neck / head plugins."""

    model_config = _STRICT
    pixel_mean: tuple[FiniteFloat, FiniteFloat, FiniteFloat] = (123.675, 116.28, 103.53)
    pixel_std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = (58.395, 57.12, 57.375)
    backbone: PluginSpec = Field(default_factory=lambda: PluginSpec(name="slimmable_resnet"))
    neck: PluginSpec = Field(default_factory=lambda: PluginSpec(name="fpn"))
    head: PluginSpec = Field(default_factory=lambda: PluginSpec(name="fcos"))
    loss: LossRecipe = Field(default_factory=LossRecipe)
    postprocess: PostprocessRecipe = Field(default_factory=PostprocessRecipe)

    @model_validator(mode="before")
    @classmethod
    def _plugin_names(cls, data: Any) -> Any:
        return _default_names(data, {"backbone": "slimmable_resnet", "neck": "fpn", "head": "fcos"})


class DataRecipe(BaseModel):
    """Datasets and augmentation. Relative paths are relative to the current working directory."""

    model_config = _STRICT
    train_images: str
    train_annotations: str
    val_images: str
    val_annotations: str
    train_sizes: list[PositiveInt] = Field(default_factory=lambda: list(range(640, 801, 32)))
    max_size: PositiveInt = 1333
    test_size: PositiveInt = 800
    flip_prob: Fraction = 0.5
    scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    size_divisibility: PositiveInt = 32
    num_workers: NonNegativeInt = 2
    on_bad_image: Literal["error", "skip"] = "error"
    on_bad_annotation: Literal["error", "drop"] = "error"
    # batch landscape (w > h) and portrait images apart, as detectron2's DATALOADER.ASPECT_RATIO_GROUPING (less
    # padding); reads each training image's width and height from the annotation file
    group_aspect_ratio: bool = False

    @model_validator(mode="after")
    def _sizes(self) -> DataRecipe:
        if not self.train_sizes:
            raise ValueError("train_sizes must not be empty")
        return self



class EvalRecipe(BaseModel):
    """How COCO box AP is computed (in training evaluations and ``msad eval``)."""

    model_config = _STRICT
    # pycocotools (the reference) or faster_coco_eval (same metrics, several times faster; pip install
    # 'msad[fast-eval]')
    backend: EvalBackend = "pycocotools"


class RunRecipe(settings_model(RunSettings, "_RunFields")):  # type: ignore[misc]
    """Run directory, seed, evaluation/checkpoint/log periods and device: ``[run]``.

    Its fields, constraints and defaults are :class:`msad.engine.settings.RunSettings`' (the one declaration,
    documented there), in TOML shape (``output`` is a string). ``best_metric = ""`` disables best-checkpoint
    selection (TOML has no null).
    """

    @field_validator("best_metric", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("sync_bn", mode="before")
    @classmethod
    def _sync_bn_choice(cls, value: Any) -> Any:
        return sync_bn_choice(value)

    @field_validator("best_metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in BEST_METRICS:
            raise ValueError(f"unknown metric {value!r}; choose one of {', '.join(BEST_METRICS)} (or \"\" for none)")
        return value

    @field_validator("output")
    @classmethod
    def _output_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a run directory (an empty path would write into the current directory)")
        return value


#: Plugin tables of a recipe: dotted path → entry-point group.
PLUGIN_TABLES: dict[tuple[str, str], str] = {
    ("model", "backbone"): "msad.backbones",
    ("model", "neck"): "msad.necks",
    ("model", "head"): "msad.heads",
    ("distill", "loss"): "msad.distill_losses",
}


class Recipe(BaseModel):
    """A whole experiment: model, data, shared solver, teacher and distillation stages, run options."""

    model_config = _STRICT
    base: str | None = None
    model: ModelRecipe = Field(default_factory=ModelRecipe)
    data: DataRecipe
    solver: SolverRecipe
    teacher: TeacherRecipe = Field(default_factory=TeacherRecipe)
    distill: DistillRecipe = Field(default_factory=DistillRecipe)
    run: RunRecipe = Field(default_factory=RunRecipe)
    eval: EvalRecipe = Field(default_factory=EvalRecipe)
    #: The files this recipe was read from (the recipe and its base), set by :func:`msad.config.load_recipe`.
    _source_files: tuple[str, ...] = PrivateAttr(default=())

    def __eq__(self, other: object) -> bool:
        """Recipes are equal when their values are (the files they were read from do not count)."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment] - mutable, like every pydantic model

    @property
    def source_files(self) -> tuple[str, ...]:
        """The recipe files it was loaded from (the file and its ``base``); empty for a recipe built in code."""
        return self._source_files

    def input_files(self) -> list[tuple[str, str]]:
        """``(what, path)`` of every file a command using this recipe reads (recipe files, annotations), so that
        no output of the command lands on one (:func:`msad.outputs.check_outputs`)."""
        data = self.data
        files = [("the recipe", path) for path in self._source_files]
        files += [("data.train_annotations", data.train_annotations), ("data.val_annotations", data.val_annotations)]
        return [(what, path) for what, path in files if path]

    def solver_for(self, stage: Stage) -> SolverRecipe:
        """The solver of ``stage``: ``[solver]`` with ``[teacher.solver]`` / ``[distill.solver]`` laid over it."""
        if stage == "train":
            return self.solver
        if stage not in ("teacher", "distill"):
            raise ValueError(f"unknown stage {stage!r}; expected train, teacher or distill")
        overrides = getattr(self, stage).solver.model_dump(exclude_none=True)
        return SolverRecipe.model_validate({**self.solver.model_dump(), **overrides})

    def sync_bn_for(self, stage: Stage) -> bool | Literal["auto"]:
        """The SyncBN setting of ``stage``: ``teacher.sync_bn`` for the teacher when set, else ``run.sync_bn``."""
        if stage not in ("train", "teacher", "distill"):
            raise ValueError(f"unknown stage {stage!r}; expected train, teacher or distill")
        if stage == "teacher" and self.teacher.sync_bn is not None:
            return self.teacher.sync_bn
        return self.run.sync_bn

    @model_validator(mode="after")
    def _stage_solvers(self) -> Recipe:
        for stage in ("teacher", "distill"):
            try:
                self.solver_for(stage)  # type: ignore[arg-type]
            except ValidationError as exc:
                raise ValueError(describe_validation_error(exc, prefix=(stage, "solver"))) from None
        return self

    def check_plugins(self) -> Recipe:
        """Validate every plugin table's options against its builder (coercing them in place); returns ``self``.

        Raises:
            RecipeError: unknown plugin or option (dotted path and close match), or a wrongly typed option.
            PluginError: a plugin that fails to load.
        """
        from msad.plugins.registry import validate_options

        for (section, key), group in PLUGIN_TABLES.items():
            spec: PluginSpec = getattr(getattr(self, section), key)
            spec.options = validate_options(group, spec.name, spec.options, path=f"{section}.{key}")
        return self

    def to_toml_dict(self) -> dict[str, Any]:
        """The recipe in TOML shape: plugin options flattened next to ``name``, ``None`` left out, no ``base``."""
        data = _toml_shape(self)
        data.pop("base", None)
        return data

    def dump_toml(self) -> str:
        """The resolved recipe as TOML text; :func:`msad.config.load_recipe` reads it back to an equal recipe."""
        from msad.config.toml_writer import dumps

        return dumps(self.to_toml_dict())


def _toml_shape(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            if field.default is not None and field.default_factory is None:
                out[name] = ""  # a None that is not the default (run.best_metric); "" reads back as None
            continue
        if isinstance(value, PluginSpec):
            out[name] = {"name": value.name, **to_jsonable_python(value.options)}
        elif isinstance(value, BaseModel):
            out[name] = _toml_shape(value)
        else:
            out[name] = to_jsonable_python(value)
    return out


def model_class_at(path: tuple[Any, ...], root: type[BaseModel] = Recipe) -> type[BaseModel] | None:
    """The recipe model class found by walking field names ``path`` from ``root``, or ``None``."""
    cls: type[BaseModel] = root
    for part in path:
        if not isinstance(part, str) or part not in cls.model_fields:
            return None
        sub = _model_type(cls.model_fields[part].annotation)
        if sub is None:
            return None
        cls = sub
    return cls


def known_keys(path: tuple[Any, ...]) -> list[str] | None:
    """Keys accepted by the recipe table at ``path`` (for did-you-mean hints), or ``None``."""
    cls = model_class_at(path)
    return None if cls is None else list(cls.model_fields)


def _model_type(annotation: Any) -> type[BaseModel] | None:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_type(arg)
            if found is not None:
                return found
    return None
