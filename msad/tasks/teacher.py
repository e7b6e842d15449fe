"""The aligned multi-scale teacher task: L(HR) + L(LR) + w·L(fused), evaluated on one branch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from msad.models.teacher import BRANCHES
from msad.structures import Batch, Detections
from msad.tasks.detection import DetectionTask, unwrap

__all__ = ["TeacherTask"]


class TeacherTask(DetectionTask):
    """Train the teacher; evaluate its ``eval_branch`` (``fused`` by default, which needs both passes).

    Args:
        fusion_weight: weight of the fused branch's loss (0.4 in the paper).
        eval_branch: ``hr``, ``lr`` or ``fused``.
        **kwargs: as :class:`DetectionTask` (``model`` is an ``AlignedMultiScaleTeacher``).
    """

    def __init__(self, *, fusion_weight: float = 0.4, eval_branch: str = "fused", **kwargs) -> None:
        super().__init__(**kwargs)
        if eval_branch not in BRANCHES:
            raise ValueError(f"eval_branch must be one of {BRANCHES}, got {eval_branch!r}")
        self.branch_weights = {"hr": 1.0, "lr": 1.0, "fused": fusion_weight}
        self.eval_branch = eval_branch

    def losses(self, model: nn.Module, batch: Batch, iteration: int) -> dict[str, Tensor]:
        """Losses of the three branches, the fused ones already weighted."""
        out = model(batch.images)
        losses: dict[str, Tensor] = {}
        for branch, weight in self.branch_weights.items():
            for name, value in self.detection_losses(out.branch(branch), batch, f"{branch}_").items():
                losses[name] = weight * value
        return losses

    @torch.no_grad()
    def predict(self, model: nn.Module, images: Tensor, image_sizes: list[tuple[int, int]]) -> list[Detections]:
        """Detections of the evaluation branch, in the HR batch frame."""
        net = unwrap(model)
        out = net(images.to(next(net.parameters()).device), branches=(self.eval_branch,))
        return self.postprocess(out.branch(self.eval_branch), self.strides, image_sizes)
