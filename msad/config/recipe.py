"""Pydantic models of a recipe: the TOML file that describes one experiment.

Every model forbids unknown keys. Plugin tables (``[model.backbone]``, ``[model.neck]``, ``[model.head]``,
``[distill.loss]``) hold a ``name`` and the plugin's options as sibling keys; those options are checked against
the plugin builder's typed keyword arguments by :meth:`Recipe.check_plugins` (called by the loader).

Data paths are kept as written; relative paths are resolved against the *current working directory* when the
data is opened (as with any command-line path), not against the recipe file.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic_core import to_jsonable_python

from msad._pydantic_errors import describe_validation_error
from msad.levels import LevelPairing

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

_STRICT = ConfigDict(extra="forbid")
#: Same values as ``msad.engine.settings.AmpMode`` / ``DeviceChoice`` (not imported: keeps msad.config light).
AmpMode = Literal["off", "bf16", "fp16"]
DeviceChoice = Literal["auto", "cpu", "cuda"]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
#: Metrics ``run.best_metric`` may name (what the COCO evaluation reports).
BEST_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
Fraction = Annotated[float, Field(ge=0, le=1)]
#: Training stages whose solver can differ: the baseline (``msad train``), the teacher and the student.
Stage = Literal["train", "teacher", "distill"]


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

    @model_validator(mode="after")
    def _sizes(self) -> DataRecipe:
        if not self.train_sizes:
            raise ValueError("train_sizes must not be empty")
        return self


class SolverRecipe(BaseModel):
    """Optimisation hyper-parameters: the one declaration of the solver's fields and their defaults.

    :class:`msad.engine.settings.SolverSettings` has the same fields and no defaults of its own
    (:func:`msad.build.solver_settings` maps this model onto it); :class:`SolverOverrides` is derived from it.
    The warm-up follows detectron2's ``WarmupMultiStepLR`` as FCOS/AdelaiDet run it: linear, from
    ``warmup_factor = 0.001`` (detectron2's ``WARMUP_FACTOR``, left unchanged by AdelaiDet's ``Base-FCOS.yaml``)
    over the paper's 500 iterations.
    """

    model_config = _STRICT
    batch_size: PositiveInt
    lr: PositiveFloat
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: NonNegativeFloat = 1e-4
    weight_decay_norm: NonNegativeFloat | None = None
    weight_decay_bias: NonNegativeFloat | None = None
    iters: PositiveInt
    steps: list[PositiveInt] = []
    gamma: PositiveFloat = 0.1
    warmup_iters: NonNegativeInt = 500
    warmup_factor: Annotated[float, Field(gt=0, le=1)] = 0.001
    clip_grad_norm: NonNegativeFloat = 0.0
    amp: AmpMode = "off"
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0

    @model_validator(mode="after")
    def _steps(self) -> SolverRecipe:
        if any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"steps must be strictly increasing, got {self.steps}")
        if self.steps and self.steps[-1] >= self.iters:
            raise ValueError(f"steps must be < iters ({self.iters}), got {self.steps}")
        return self


def _all_optional(model: type[BaseModel], name: str, doc: str) -> type[BaseModel]:
    """A strict model with ``model``'s fields and constraints, each optional with default ``None``."""
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[key] = (annotation | None, None)
    return create_model(name, __config__=_STRICT, __doc__=doc, __module__=__name__, **fields)


SolverOverrides = _all_optional(
    SolverRecipe, "SolverOverrides", "Per-stage changes to the shared ``[solver]``; a field left out (``None``) inherits it."
)


class TeacherLossWeights(BaseModel):
    """Weights of the teacher's branch losses: ``hr·L(HR) + lr·L(LR) + fused·L(fused)`` (the paper: 1, 1, 0.4)."""

    model_config = _STRICT
    hr: NonNegativeFloat = 1.0
    lr: NonNegativeFloat = 1.0
    fused: NonNegativeFloat = 0.4

    @model_validator(mode="after")
    def _some_weight(self) -> TeacherLossWeights:
        if not (self.hr or self.lr or self.fused):
            raise ValueError("at least one of hr, lr, fused must be > 0 (all three are 0: nothing would be trained)")
        return self


class TeacherRecipe(BaseModel):
    """Stage 1, the aligned multi-scale teacher (HR + LR branches and C-FF fusion).

    ``bn = "shared"`` (the paper) normalises both resolutions with one set of backbone BatchNorms;
    ``"per_resolution"`` (beyond the paper) gives each resolution a private set, switched by branch as a
    slimmable network switches BN by width. ``fusion_weight`` is the old name of ``loss_weights.fused``
    (still read; giving both with different values is an error).
    """

    model_config = _STRICT
    k: int = 2
    loss_weights: TeacherLossWeights = Field(default_factory=TeacherLossWeights)
    fusion_weight: NonNegativeFloat | None = None
    bn: Literal["shared", "per_resolution"] = "shared"
    fusion_hidden: PositiveInt = 32
    size_divisibility: PositiveInt = 256
    eval_branch: Literal["fused", "hr", "lr"] = "fused"
    solver: SolverOverrides = Field(default_factory=SolverOverrides)

    @model_validator(mode="before")
    @classmethod
    def _fusion_weight_alias(cls, data: Any) -> Any:
        """Move the old ``fusion_weight`` into ``loss_weights.fused``."""
        if not isinstance(data, Mapping) or data.get("fusion_weight") is None:
            return data
        data = dict(data)
        value = data.pop("fusion_weight")
        weights = data.get("loss_weights", {})
        if isinstance(weights, Mapping):
            if "fused" in weights and weights["fused"] != value:
                raise ValueError(
                    f"fusion_weight = {value} and loss_weights.fused = {weights['fused']} disagree; fusion_weight is "
                    "the old name of loss_weights.fused: keep only loss_weights.fused"
                )
            data["loss_weights"] = {**weights, "fused": value}
        return data

    @field_validator("k")
    @classmethod
    def _k(cls, k: int) -> int:
        try:
            LevelPairing(k=k)
        except ValueError as exc:
            reason = str(exc).removesuffix("; use k=2")
            raise ValueError(f"k = {k}: {reason}; only k = 2 is supported") from None
        return k

    @model_validator(mode="after")
    def _divisibility(self) -> TeacherRecipe:
        if self.size_divisibility % (32 * self.k):
            raise ValueError(
                f"size_divisibility must be a multiple of {32 * self.k} (32·k) so that the LR image is "
                f"a multiple of 32, got {self.size_divisibility}"
            )
        return self


class DistillRecipe(BaseModel):
    """Stage 2, the low-resolution student distilled from the frozen teacher's fused features."""

    model_config = _STRICT
    loss: PluginSpec = Field(default_factory=lambda: PluginSpec(name="msad_l1"))
    kd_weight: NonNegativeFloat = 1.0
    ramp_iters: NonNegativeInt = 500
    teacher_bn: Literal["eval", "train"] = "eval"
    solver: SolverOverrides = Field(default_factory=SolverOverrides)

    @model_validator(mode="before")
    @classmethod
    def _plugin_names(cls, data: Any) -> Any:
        return _default_names(data, {"loss": "msad_l1"})


class RunRecipe(BaseModel):
    """Run directory, seed, evaluation/checkpoint/log periods and device; see ``RunSettings``.

    ``best_metric = ""`` disables best-checkpoint selection (TOML has no null).
    """

    model_config = _STRICT
    output: str = "runs/default"
    seed: int = 0
    eval_period: NonNegativeInt = 0
    checkpoint_period: NonNegativeInt = 0
    keep_checkpoints: NonNegativeInt = 3
    log_period: PositiveInt = 20
    best_metric: str | None = "AP"
    sync_bn: bool | Literal["auto"] = "auto"  # auto: SyncBN when several CUDA ranks train a BatchNorm model
    device: DeviceChoice = "auto"
    tensorboard: bool = False  # also TensorBoard events in output/tensorboard (pip install 'msad[tensorboard]')
    compile: bool = False  # torch.compile the trained model's forward (evaluation and checkpoints stay eager)

    @field_validator("best_metric", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("sync_bn", mode="before")
    @classmethod
    def _sync_bn_choice(cls, value: Any) -> Any:
        if isinstance(value, bool) or value == "auto":
            return value
        raise ValueError(f'must be true, false or "auto", got {value!r}')

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

    def solver_for(self, stage: Stage) -> SolverRecipe:
        """The solver of ``stage``: ``[solver]`` with ``[teacher.solver]`` / ``[distill.solver]`` laid over it."""
        if stage == "train":
            return self.solver
        if stage not in ("teacher", "distill"):
            raise ValueError(f"unknown stage {stage!r}; expected train, teacher or distill")
        overrides = getattr(self, stage).solver.model_dump(exclude_none=True)
        return SolverRecipe.model_validate({**self.solver.model_dump(), **overrides})

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
