"""What a role is: the one protocol that baseline, teacher and student implement.

A role answers every question whose answer depends on *which* detector a run trains or a weights file holds:
its recipe stage (solver), its level routing, the padding of its batches per input frame, how its model is built
and initialised, its training objective (the engine task), what its network sees of an image (the ×1/k copy),
which inference branch it runs, its deployed graph's contract, which recipe fields a resume must match, and how
it is named in a report. Callers hold a role (``get_role(name)``) and make one call on it; nothing outside
``msad.roles`` compares role names.

Frames: ``hr`` is an image at the recipe's test size (resized as evaluation resizes it); ``lr`` is an image that is
already a student's low-resolution input (the ×1/k copy of an HR image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from msad.build import (
    build_criterion,
    build_evaluator,
    build_postprocess,
    build_val_dataset,
    check_frozen_backbone,
    collator,
)
from msad.comm import get_rank, get_world_size
from msad.levels import HEAD_LEVELS, LevelPairing, level_stride
from msad.models.detector import downscale_nearest
from msad.tasks.detection import DetectionTask
from msad.visualize import make_previewer

if TYPE_CHECKING:
    from msad.config import Recipe
    from msad.data import Collator

__all__ = ["FRAMES", "Role", "TaskParts", "DeployFrame"]

#: What an image given to a role's network is (see the module docstring).
FRAMES: tuple[str, ...] = ("hr", "lr")


@dataclass(frozen=True)
class TaskParts:
    """What every role's engine task shares: losses, decoding, evaluation, checkpoint metadata and previews."""

    criterion: Any
    postprocess: Any
    evaluator: Any
    metadata: dict[str, str]
    previewer: Any

    def kwargs(self) -> dict[str, Any]:
        """As keyword arguments of :class:`~msad.tasks.detection.DetectionTask` (its parameters of the same names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class DeployFrame:
    """How a role's deployed graph relates to the image it is given (see :class:`msad.export.DeploySpec`)."""

    input_frame: str
    input_factor: int
    box_scale: float
    size_divisibility: int
    resize: tuple[int, int, float] | None
    coarsest_stride: int


class Role:
    """One kind of detector msad trains: the base of :class:`Baseline`, :class:`Teacher` and :class:`Student`.

    Subclasses set the class attributes and implement :meth:`routing`, :meth:`build_model` and :meth:`_task`;
    the rest has defaults that a role overrides where it differs.

    Attributes:
        name: the name in recipes, metadata and reports (``baseline``…).
        stage: the recipe stage whose solver trains it (:meth:`msad.config.Recipe.solver_for`).
        frames: the frames its network can take an image in (the first is the default).
        branches: the inference branches it can run (empty: one output).
        resume_sections: the recipe tables (dotted prefixes) a resumed run must keep unchanged.
        detector_prefix: where its FCOS detector's tensors lie in its state dict.
    """

    name: ClassVar[str]
    stage: ClassVar[str]
    frames: ClassVar[tuple[str, ...]] = ("hr",)
    branches: ClassVar[tuple[str, ...]] = ()
    resume_sections: ClassVar[tuple[str, ...]] = ("model", "data", "solver", "run.seed")
    detector_prefix: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __str__(self) -> str:
        return self.name

    # -- the model ---------------------------------------------------------------------------------------------

    def routing(self, pairing: LevelPairing) -> tuple[dict[str, str], list[str]]:
        """``(head level → pyramid level, pyramid levels the neck must build)``."""
        raise NotImplementedError

    def build_model(self, recipe: Recipe, *, num_classes: int, teacher: nn.Module | None = None) -> nn.Module:
        """The role's model, randomly initialised (or from its plugins' initialisation files)."""
        raise NotImplementedError

    def detector(self, model: nn.Module) -> nn.Module:
        """The FCOS detector (backbone, neck, head) inside the role's model."""
        return model

    def check_trainable(self, recipe: Recipe) -> None:
        """Refuse a recipe this role cannot train (before anything is built); see :func:`check_frozen_backbone`."""
        check_frozen_backbone(recipe)

    # -- what the network sees ---------------------------------------------------------------------------------

    def check_frame(self, frame: str) -> None:
        """Refuse a frame the role's network cannot take."""
        if frame not in self.frames:
            raise ValueError(f"a {self.name} takes {' or '.join(self.frames)} images, not {frame!r}")

    def size_divisibility(self, recipe: Recipe, frame: str = "hr") -> int:
        """The multiple a batch of ``frame`` images is padded to, in training, evaluation, prediction and export."""
        self.check_frame(frame)
        return recipe.data.size_divisibility

    def input_factor(self, recipe: Recipe, frame: str = "hr") -> int:
        """How much smaller the network's input is than a ``frame`` image (1: the image itself)."""
        self.check_frame(frame)
        return 1

    def network_input(self, images: Tensor, recipe: Recipe, frame: str = "hr") -> Tensor:
        """What the network sees of a padded, normalised batch of ``frame`` images: the one place the ×1/k copy
        is made."""
        factor = self.input_factor(recipe, frame)
        return images if factor == 1 else downscale_nearest(images, factor)

    def output_factor(self, recipe: Recipe, frame: str = "hr") -> int:
        """How much larger the frame of the decoded boxes is than a ``frame`` image (1: the image's own)."""
        self.check_frame(frame)
        return 1

    def collator(self, recipe: Recipe, frame: str = "hr", *, normalize_on_device: bool = False) -> Collator:
        """The collator of the role's ``frame`` batches (training: ``normalize_on_device``, uint8 batches)."""
        return collator(recipe, self.size_divisibility(recipe, frame), normalize_on_device=normalize_on_device)

    # -- inference ---------------------------------------------------------------------------------------------

    def branch(self, recipe: Recipe, requested: str | None = None) -> str | None:
        """The inference branch to run: ``requested``, else the recipe's; ``None`` for a role with one output.

        Raises:
            ValueError: a branch requested of a role that has none, or one it does not have.
        """
        if requested is not None:
            raise ValueError(f"a {self.name} has no branches (asked for {requested!r})")
        return None

    def inference_network(self, model: nn.Module, branch: str | None = None) -> nn.Module:
        """``model`` as a network from its input to the head outputs of ``branch`` (see :meth:`branch`)."""
        return model

    # -- training ----------------------------------------------------------------------------------------------

    def metadata(self, recipe: Recipe) -> dict[str, str]:
        """What the role adds to the checkpoint metadata of its runs."""
        return {}

    def build_task(
        self, recipe: Recipe, *, label_space: Sequence[tuple[int, str]], metadata: dict[str, str],
        model: nn.Module | None = None, teacher: nn.Module | None = None, train_set: Any = None,
        val_batch_size: int | None = None, eval_branch: str | None = None,
    ) -> DetectionTask:
        """The engine task (training objective, evaluation, checkpoint metadata) of the role.

        Args:
            recipe: the resolved recipe.
            label_space: ``[(coco_id, name), …]`` in label order.
            metadata: the checkpoint metadata of the detector (:func:`msad.checkpoint.detector_metadata`).
            model: an already built (e.g. loaded) model; otherwise it is built here.
            teacher: the trained teacher a student is distilled from (a student given ``model`` needs none).
            train_set: the training set, to check the validation categories against.
            val_batch_size: images per rank in evaluation (default: the solver batch over ranks).
            eval_branch: the branch to evaluate (default :meth:`branch`'s).
        """
        parts = self._parts(recipe, label_space, {**metadata, **self.metadata(recipe)}, train_set, val_batch_size)
        return self._task(recipe, parts, model=model, teacher=teacher, branch=self.branch(recipe, eval_branch),
                          num_classes=len(label_space))

    def _task(self, recipe: Recipe, parts: TaskParts, *, model: nn.Module | None, teacher: nn.Module | None,
              branch: str | None, num_classes: int) -> DetectionTask:
        raise NotImplementedError

    def _parts(self, recipe: Recipe, label_space, metadata, train_set, val_batch_size) -> TaskParts:
        """The shared parts; the validation set (when the recipe has one) is read once, for the COCO evaluator and
        for the TensorBoard previewer (rank 0, only with ``run.tensorboard``)."""
        val_set = None
        if recipe.data.val_annotations:
            val_set = build_val_dataset(recipe, label_space=label_space, train=train_set)
        evaluator = previewer = None
        if val_set is not None:
            per_rank = val_batch_size or max(1, recipe.solver_for(self.stage).batch_size // get_world_size())
            evaluator = build_evaluator(recipe, val_set, collate=self.collator(recipe), batch_size=per_rank)
            if recipe.run.tensorboard and get_rank() == 0:
                previewer = make_previewer(val_set, collate=self.collator(recipe))
        return TaskParts(
            criterion=build_criterion(recipe, num_classes=len(label_space)), postprocess=build_postprocess(recipe),
            evaluator=evaluator, metadata=metadata, previewer=previewer,
        )

    # -- export ------------------------------------------------------------------------------------------------

    def deploy_frame(self, recipe: Recipe, frame: str = "hr") -> DeployFrame:
        """The contract of the role's deployed graph for ``frame`` images: the padding and factors evaluation uses."""
        data = recipe.data
        factor, out = self.input_factor(recipe, frame), self.output_factor(recipe, frame)
        coarsest = max(level_stride(lvl) for lvl in HEAD_LEVELS)
        return DeployFrame(
            input_frame=frame, input_factor=factor, box_scale=1.0 / out,
            size_divisibility=self.size_divisibility(recipe, frame),
            resize=(data.test_size, data.max_size, data.scale) if frame == "hr" else None,
            coarsest_stride=coarsest // out,
        )

    # -- reports -----------------------------------------------------------------------------------------------

    def describe(self, recipe: Recipe) -> str:
        """A short name for a model of this role trained with ``recipe`` (``MSAD teacher``…)."""
        return f"MSAD {self.name}"

    def input_label(self, recipe: Recipe, hr_size: tuple[int, int]) -> str:
        """What the network sees of an HR image of ``hr_size``, e.g. ``LR 400×608``."""
        h, w = hr_size
        return f"HR {h}×{w}"

    def capacity(self, row: Any, recipe: Recipe) -> float:
        """The paper's capacity column (backbone multiply-adds relative to the width-1.0 HR backbone) of a model of
        this role, from a :class:`msad.api.flops.CapacityRow` of its width."""
        raise NotImplementedError
