"""Turn a resolved recipe into objects, whatever the role: the parts every role builds the same way.

The detector from its plugins (with the routing a role gives), criterion, postprocess, distillation loss,
datasets, collators, the evaluator and the engine settings are built here. What differs by role (which levels,
which padding, which model around the detector) is decided by the role (:mod:`msad.roles`), which calls these.
Leaf layers never see the recipe; the builders here read it and call plugin and class constructors with plain
keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from msad.comm import get_local_rank
from msad.data import CocoDetection, Collator, build_transforms, check_category_compat
from msad.engine.settings import RunSettings, SolverSettings
from msad.errors import MsadError, RecipeError
from msad.evaluation import require_backend
from msad.models.detector import FCOS
from msad.ops.losses import FCOSCriterion
from msad.ops.postprocess import FCOSPostProcess
from msad.plugins import call_builder, declared_options
from msad.tasks.evaluation_loop import Predictor, evaluate_coco

if TYPE_CHECKING:
    from msad.config import ModelRecipe, PluginSpec, Recipe

__all__ = [
    "LabelSpace", "build_detector", "build_neck", "build_distill_loss", "model_width", "check_frozen_backbone",
    "build_criterion", "build_postprocess", "build_train_dataset", "build_val_dataset", "collator", "build_evaluator",
    "solver_settings", "run_settings",
]

#: ``[(coco_category_id, name), …]`` in label order.
LabelSpace = Sequence[tuple[int, str]]


def build_detector(model: ModelRecipe, *, num_classes: int, head_levels: Mapping[str, str], neck_levels: list[str]) -> FCOS:
    """Backbone, neck and head from their plugins, wired as an :class:`FCOS` with the given routing."""
    backbone = _plugin("msad.backbones", model.backbone, "model.backbone")
    neck = build_neck(model, backbone, neck_levels)
    channels = {f.channels for f in neck.feature_info}
    if len(channels) != 1:
        raise RecipeError(
            f"model.neck ({model.neck.name}): the head needs one channel count on every pyramid level, the neck "
            f"gives {sorted(channels)}"
        )
    head = _plugin(
        "msad.heads", model.head, "model.head", in_channels=channels.pop(), num_classes=num_classes,
        levels=list(head_levels),
    )
    return FCOS(backbone=backbone, neck=neck, head=head, head_levels=head_levels)


def build_neck(model: ModelRecipe, backbone: nn.Module, levels: list[str]) -> nn.Module:
    """The recipe's neck over ``backbone``'s features, producing ``levels``."""
    return _plugin("msad.necks", model.neck, "model.neck", in_features=list(backbone.feature_info), levels=levels)


def _plugin(group: str, spec: PluginSpec, path: str, **supplied: Any) -> Any:
    """Call the plugin builder of ``spec`` with the arguments msad supplies and the recipe's options.

    Builders check their arguments with ``ValueError`` (a Python API convention); here, where the values come
    from a recipe, such a refusal becomes a :class:`RecipeError` naming the recipe table.
    """
    try:
        return call_builder(group, spec.name, **supplied, **spec.options)
    except MsadError:
        raise
    except ValueError as err:
        raise RecipeError(f"{path} ({spec.name}): {' '.join(str(err).split())}") from err


def check_frozen_backbone(recipe: Recipe) -> None:
    """Refuse to train a backbone whose frozen stages would stay at their random initialisation.

    A model trained from its plugins' initialisation (not from another model's weights, as the student is from
    its teacher's) whose backbone's declared freezing option (``freeze_at`` of ``slimmable_resnet``) is above 0 needs
    one of its declared initialisation files (``weights``).

    Raises:
        RecipeError: frozen stages without an initialisation file.
    """
    backbone = recipe.model.backbone
    declared = declared_options("msad.backbones", backbone.name)
    frozen = backbone.options.get(declared.freeze) if declared.freeze else None
    if not frozen or any(backbone.options.get(name) for name in declared.init_files):
        return
    if declared.init_files:
        remedy = f"set model.backbone.{declared.init_files[0]} to an ImageNet checkpoint, or {declared.freeze} = 0"
        remedy += " (the paper freezes nothing)"
    else:
        remedy = f"set {declared.freeze} = 0 (backbone {backbone.name!r} declares no initialisation file)"
    raise RecipeError(
        f"model.backbone.{declared.freeze} = {frozen} freezes backbone stages at their random initialisation: {remedy}"
    )


def build_distill_loss(recipe: Recipe) -> nn.Module:
    """The recipe's distillation loss plugin."""
    return _plugin("msad.distill_losses", recipe.distill.loss, "distill.loss")


def model_width(recipe: Recipe) -> float | None:
    """The backbone width the recipe asks for: its declared width option (``None`` when it declares none, or the
    recipe leaves it at the builder's default)."""
    backbone = recipe.model.backbone
    option = declared_options("msad.backbones", backbone.name).width
    width = backbone.options.get(option) if option else None
    return None if width is None else float(width)


def build_criterion(recipe: Recipe, *, num_classes: int) -> FCOSCriterion:
    """The FCOS training losses with the recipe's ``[model.loss]`` hyper-parameters."""
    loss = recipe.model.loss
    return FCOSCriterion(
        num_classes=num_classes, focal_alpha=loss.focal_alpha, focal_gamma=loss.focal_gamma,
        center_radius=loss.center_radius,
    )


def build_postprocess(recipe: Recipe) -> FCOSPostProcess:
    """FCOS inference (scores, top-k, NMS) with the recipe's ``[model.postprocess]`` settings."""
    return FCOSPostProcess(**recipe.model.postprocess.model_dump())


def build_train_dataset(recipe: Recipe) -> CocoDetection:
    """The recipe's training set with multi-scale resize (times ``data.scale``) and flip.

    Only the first process of each machine (``LOCAL_RANK`` 0) checks that every listed image file exists (one
    ``stat`` per image, which is slow on a network filesystem when 8 ranks do it); the others meet a missing file
    when they read it, with the same error or skip.
    """
    data = recipe.data
    transforms = build_transforms(
        train=True, short_sizes=data.train_sizes, max_size=data.max_size, scale=data.scale, flip_prob=data.flip_prob
    )
    return CocoDetection(
        data.train_images, data.train_annotations, transforms=transforms, on_bad_image=data.on_bad_image,
        on_bad_annotation=data.on_bad_annotation, train=True, check_files=get_local_rank() == 0,
    )


def build_val_dataset(recipe: Recipe, *, label_space: LabelSpace, train: CocoDetection | None = None) -> CocoDetection:
    """The recipe's validation set at ``data.test_size`` (times ``data.scale``), sharing ``label_space``.

    Its image files are checked by the first process of each machine, as the training set's.
    """
    data = recipe.data
    transforms = build_transforms(train=False, short_sizes=[data.test_size], max_size=data.max_size, scale=data.scale)
    dataset = CocoDetection(
        data.val_images, data.val_annotations, transforms=transforms, on_bad_image=data.on_bad_image,
        on_bad_annotation=data.on_bad_annotation, train=False, label_space=label_space,
        check_files=get_local_rank() == 0,
    )
    if train is not None:
        check_category_compat(train, dataset)
    return dataset


def collator(recipe: Recipe, size_divisibility: int, *, normalize_on_device: bool = False) -> Collator:
    """A collator padding to ``size_divisibility`` and normalising with the recipe's pixel mean and std
    (``normalize_on_device``: ``uint8`` batches, normalised by ``Batch.to(device)``, as the training loader makes
    them). A role's padding is :meth:`msad.roles.Role.size_divisibility`."""
    model = recipe.model
    return Collator(
        size_divisibility=size_divisibility, pixel_mean=tuple(model.pixel_mean), pixel_std=tuple(model.pixel_std),
        normalize_on_device=normalize_on_device,
    )


def build_evaluator(
    recipe: Recipe, dataset: CocoDetection, *, collate: Collator, batch_size: int
) -> Callable[[Predictor], dict[str, float]]:
    """``evaluator(predict) -> metrics`` over ``dataset`` (sharded over ranks, gathered) with ``eval.backend``; its
    ``num_images`` attribute says how many images it evaluates on.

    Raises:
        MissingDependencyError: the backend's package is not installed (checked now, not at the first evaluation).
    """
    workers, backend = recipe.data.num_workers, recipe.eval.backend
    require_backend(backend)

    def evaluator(predict: Predictor) -> dict[str, float]:
        return evaluate_coco(
            predict, dataset, collate=collate, batch_size=batch_size, num_workers=workers, backend=backend
        )

    evaluator.num_images = len(dataset)  # type: ignore[attr-defined]
    return evaluator


def solver_settings(recipe: Recipe, *, stage: str) -> SolverSettings:
    """The engine's solver settings of a recipe stage (a role's :attr:`~msad.roles.Role.stage`): the recipe's solver
    of that stage (the recipe's ``[solver]`` table is derived from :class:`SolverSettings`, so the fields are the
    same)."""
    return SolverSettings(**recipe.solver_for(stage).model_dump())


def run_settings(recipe: Recipe, *, stage: str | None = None) -> RunSettings:
    """The engine's run settings from the recipe's ``[run]`` table; with ``stage``, that stage's SyncBN setting
    (``teacher.sync_bn`` replaces ``run.sync_bn`` for the teacher, :meth:`Recipe.sync_bn_for`)."""
    values = recipe.run.model_dump()
    if stage is not None:
        values["sync_bn"] = recipe.sync_bn_for(stage)
    return RunSettings(**values)
