"""The training stages' sections of a recipe: the solver, its per-stage overrides, the teacher and the student.

``[solver]`` (:class:`SolverRecipe`) is shared by every stage; ``[teacher.solver]`` and ``[distill.solver]``
(:class:`SolverOverrides`, derived from it) change it for one stage. ``[teacher]`` (:class:`TeacherRecipe`) is
stage 1, the aligned multi-scale teacher; ``[distill]`` (:class:`DistillRecipe`) is stage 2, the low-resolution
student. :mod:`msad.config.recipe` assembles them into the whole :class:`~msad.config.recipe.Recipe` and
re-exports every public name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator, model_validator

from msad.config.common import (
    _STRICT,
    NonNegativeFloat,
    NonNegativeInt,
    PluginSpec,
    PositiveInt,
    _default_names,
    settings_model,
    sync_bn_choice,
)
from msad.engine.settings import SolverSettings, steps_problem
from msad.levels import LevelPairing

__all__ = ["Stage", "SolverRecipe", "SolverOverrides", "TeacherLossWeights", "TeacherRecipe", "DistillRecipe"]

#: Training stages whose solver can differ: the baseline (``msad train``), the teacher and the student.
Stage = Literal["train", "teacher", "distill"]


class SolverRecipe(settings_model(SolverSettings, "_SolverFields")):  # type: ignore[misc]
    """Optimisation hyper-parameters: ``[solver]``, shared by every stage.

    Its fields, constraints and defaults are :class:`msad.engine.settings.SolverSettings`' (the one declaration,
    documented there), in TOML shape; :func:`msad.build.solver_settings` maps this model onto it and
    :class:`SolverOverrides` is derived from it.
    """

    @model_validator(mode="after")
    def _steps(self) -> SolverRecipe:
        problem = steps_problem(self.steps, self.iters)
        if problem is not None:
            raise ValueError(problem)
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
    slimmable network switches BN by width. ``fusion_weight`` is msad 0.1's name of ``loss_weights.fused``
    (still read: 0.1 recipes and weights files use it; giving both with different values is an error).
    ``sync_bn`` (``true``, ``false`` or ``"auto"``) replaces ``run.sync_bn`` for the teacher stage only; left
    out, the teacher follows ``run.sync_bn``. The reference trains its w0.5 and w0.75 teachers with per-GPU BN
    and every other stage with SyncBN.
    """

    model_config = _STRICT
    k: int = 2
    loss_weights: TeacherLossWeights = Field(default_factory=TeacherLossWeights)
    fusion_weight: NonNegativeFloat | None = None
    bn: Literal["shared", "per_resolution"] = "shared"
    fusion_hidden: PositiveInt = 32
    size_divisibility: PositiveInt = 256
    eval_branch: Literal["fused", "hr", "lr"] = "fused"
    sync_bn: bool | Literal["auto"] | None = None  # None (left out): run.sync_bn
    solver: SolverOverrides = Field(default_factory=SolverOverrides)

    @field_validator("sync_bn", mode="before")
    @classmethod
    def _sync_bn_choice(cls, value: Any) -> Any:
        return sync_bn_choice(value)

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
