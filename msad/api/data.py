"""Datasets, collators and evaluators of a recipe, per role (the data side of the Python API)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from msad.config import Recipe
from msad.data import Collator, CocoDetection, build_transforms, check_category_compat
from msad.tasks.evaluate import Predictor, evaluate_coco

__all__ = ["LabelSpace", "train_dataset", "val_dataset", "train_collator", "eval_collator", "coco_evaluator"]

#: ``[(coco_category_id, name), …]`` in label order.
LabelSpace = Sequence[tuple[int, str]]


@dataclass(frozen=True)
class _Sizes:
    """Padding of the batch tensor for a role (the teacher needs HR sizes divisible by its own multiple)."""

    train: int
    eval: int


def _sizes(recipe: Recipe, role: str) -> _Sizes:
    """Training and evaluation ``size_divisibility`` of a role."""
    data, teacher = recipe.data, recipe.teacher
    if role == "teacher":
        return _Sizes(teacher.size_divisibility, teacher.size_divisibility)
    if role == "student":  # trains beside the teacher on HR batches; evaluates alone on the ×1/k copy
        return _Sizes(teacher.size_divisibility, data.size_divisibility * teacher.k)
    return _Sizes(data.size_divisibility, data.size_divisibility)


def train_dataset(recipe: Recipe) -> CocoDetection:
    """The recipe's training set with multi-scale resize (times ``data.scale``) and flip."""
    data = recipe.data
    transforms = build_transforms(
        train=True, short_sizes=data.train_sizes, max_size=data.max_size, scale=data.scale, flip_prob=data.flip_prob
    )
    return CocoDetection(
        data.train_images, data.train_annotations, transforms=transforms, on_bad_image=data.on_bad_image, train=True
    )


def val_dataset(recipe: Recipe, *, label_space: LabelSpace, train: CocoDetection | None = None) -> CocoDetection:
    """The recipe's validation set at ``data.test_size`` (times ``data.scale``), sharing ``label_space``."""
    data = recipe.data
    transforms = build_transforms(train=False, short_sizes=[data.test_size], max_size=data.max_size, scale=data.scale)
    dataset = CocoDetection(
        data.val_images, data.val_annotations, transforms=transforms, on_bad_image=data.on_bad_image, train=False,
        label_space=label_space,
    )
    if train is not None:
        check_category_compat(train, dataset)
    return dataset


def _collator(recipe: Recipe, divisibility: int) -> Collator:
    model = recipe.model
    return Collator(size_divisibility=divisibility, pixel_mean=tuple(model.pixel_mean), pixel_std=tuple(model.pixel_std))


def train_collator(recipe: Recipe, role: str) -> Collator:
    """Collator of a role's training batches."""
    return _collator(recipe, _sizes(recipe, role).train)


def eval_collator(recipe: Recipe, role: str) -> Collator:
    """Collator of a role's evaluation batches."""
    return _collator(recipe, _sizes(recipe, role).eval)


def coco_evaluator(
    recipe: Recipe, role: str, dataset: CocoDetection, *, batch_size: int
) -> Callable[[Predictor], dict[str, float]]:
    """``evaluator(predict) -> metrics`` over ``dataset`` (sharded over ranks, gathered)."""
    collate = eval_collator(recipe, role)
    workers = recipe.data.num_workers

    def evaluator(predict: Predictor) -> dict[str, float]:
        return evaluate_coco(predict, dataset, collate=collate, batch_size=batch_size, num_workers=workers)

    return evaluator
