"""The single-detector task: the FCOS baseline (HR or LR) and the base of the student.

``input_factor`` says how the network's input relates to the batch: 1 feeds the batch as it is, k feeds its
nearest ×1/k copy (the student). Targets and predictions stay in the batch frame either way, because the
detector's head levels carry strides of that frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from msad.models.detector import downscale_nearest
from msad.ops.losses import FCOSCriterion, FCOSTargets
from msad.ops.postprocess import FCOSPostProcess
from msad.structures import Batch, Detections, LevelOutputs

__all__ = ["DetectionTask", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP (or similar) wrapper, or the module itself."""
    return getattr(model, "module", model)


class DetectionTask:
    """Train and evaluate one FCOS detector.

    Args:
        model: the detector (an :class:`~msad.models.detector.FCOS`).
        criterion: FCOS losses.
        postprocess: decoding and NMS.
        input_factor: 1, or k to feed the nearest ×1/k copy of each batch.
        evaluator: ``evaluator(predict) -> metrics``, where ``predict(images) -> list[Detections]`` in the batch
            frame; ``None`` disables evaluation.
        metadata: checkpoint metadata (role, width, recipe, classes…).
        previewer: ``previewer(predict) -> {name: image}`` drawing a few predictions (TensorBoard); ``None``: none.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        criterion: FCOSCriterion,
        postprocess: FCOSPostProcess,
        input_factor: int = 1,
        evaluator: Callable[[Callable[[Tensor, list[tuple[int, int]]], list[Detections]]], dict[str, float]] | None = None,
        metadata: dict[str, str] | None = None,
        previewer: Callable[[Callable[[Tensor, list[tuple[int, int]]], list[Detections]]], dict[str, Any]] | None = None,
    ) -> None:
        self.model = model
        self.frozen: dict[str, nn.Module] = {}
        self.criterion = criterion
        self.postprocess = postprocess
        self.input_factor = input_factor
        self.evaluator = evaluator
        self._metadata = dict(metadata or {})
        self.previewer = previewer
        self.strides: dict[str, int] = model.strides

    def network_input(self, images: Tensor) -> Tensor:
        """What the network sees for a batch tensor."""
        return images if self.input_factor == 1 else downscale_nearest(images, self.input_factor)

    def detection_losses(
        self, outputs: dict[str, LevelOutputs], batch: Batch, prefix: str = "", *, assigned: FCOSTargets | None = None
    ) -> dict[str, Tensor]:
        """FCOS losses of one set of head outputs, names prefixed (``hr_loss_cls`` …); ``assigned``: targets
        already assigned for maps of these sizes (:meth:`FCOSCriterion.assign`), reused instead of assigning again."""
        losses = self.criterion(outputs, batch.targets, self.strides, assigned=assigned)
        return {f"{prefix}{name}": value for name, value in losses.items()}

    def losses(self, model: nn.Module, batch: Batch, iteration: int) -> dict[str, Tensor]:
        """FCOS losses for one batch."""
        return self.detection_losses(model(self.network_input(batch.images)), batch)

    @torch.no_grad()
    def predict(self, model: nn.Module, images: Tensor, image_sizes: list[tuple[int, int]]) -> list[Detections]:
        """Detections in the batch frame for a batch tensor."""
        net = unwrap(model)
        images = images.to(next(net.parameters()).device)
        outputs = net(self.network_input(images))
        return self.postprocess(outputs, self.strides, image_sizes)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """COCO metrics of ``model`` on the validation data (all ranks call this)."""
        if self.evaluator is None:
            return {}
        return self.evaluator(lambda images, sizes: self.predict(model, images, sizes))

    def preview(self, model: nn.Module) -> dict[str, Any]:
        """A few validation images with ``model``'s detections drawn (empty without a previewer)."""
        if self.previewer is None:
            return {}
        return self.previewer(lambda images, sizes: self.predict(model, images, sizes))

    def metadata(self) -> dict[str, str]:
        """Checkpoint metadata."""
        return dict(self._metadata)
