"""The aligned multi-scale teacher task: w_hr·L(HR) + w_lr·L(LR) + w_fused·L(fused), evaluated on one branch."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from msad.models.teacher import BRANCHES
from msad.structures import Batch, Detections
from msad.tasks.detection import DetectionTask, unwrap

__all__ = ["PAPER_LOSS_WEIGHTS", "TeacherTask"]

#: The paper's branch loss weights: L(HR) + L(LR) + 0.4·L(fused).
PAPER_LOSS_WEIGHTS: dict[str, float] = {"hr": 1.0, "lr": 1.0, "fused": 0.4}


class TeacherTask(DetectionTask):
    """Train the teacher; evaluate its ``eval_branch`` (``fused`` by default, which needs both passes).

    Args:
        loss_weights: weight of each branch's loss, keyed ``hr``, ``lr``, ``fused`` (the paper: 1, 1, 0.4).
            A branch of weight 0 still runs (its loss is reported times 0), so every parameter keeps a gradient.
        eval_branch: ``hr``, ``lr`` or ``fused``.
        **kwargs: as :class:`DetectionTask` (``model`` is an ``AlignedMultiScaleTeacher``).
    """

    def __init__(self, *, loss_weights: Mapping[str, float] | None = None, eval_branch: str = "fused", **kwargs) -> None:
        super().__init__(**kwargs)
        if eval_branch not in BRANCHES:
            raise ValueError(f"eval_branch must be one of {BRANCHES}, got {eval_branch!r}")
        weights = dict(PAPER_LOSS_WEIGHTS if loss_weights is None else loss_weights)
        if set(weights) != set(BRANCHES) or any(w < 0 for w in weights.values()):
            raise ValueError(f"loss_weights must give a weight >= 0 to each of {BRANCHES}, got {weights}")
        self.branch_weights = weights
        self.eval_branch = eval_branch

    def losses(self, model: nn.Module, batch: Batch, iteration: int) -> dict[str, Tensor]:
        """Losses of the three branches, each multiplied by its branch weight.

        The branches share their point locations, strides and boxes (the LR maps are aligned with the HR ones),
        so the FCOS targets and their normalisers are assigned once and reused by the three branch losses.
        """
        out = model(batch.images)
        assigned = self.criterion.assign(out.branch("hr"), batch.targets, self.strides)
        losses: dict[str, Tensor] = {}
        for branch, weight in self.branch_weights.items():
            for name, value in self.detection_losses(out.branch(branch), batch, f"{branch}_", assigned=assigned).items():
                losses[name] = weight * value
        return losses

    @torch.no_grad()
    def predict(self, model: nn.Module, images: Tensor, image_sizes: list[tuple[int, int]]) -> list[Detections]:
        """Detections of the evaluation branch, in the HR batch frame."""
        net = unwrap(model)
        out = net(images.to(next(net.parameters()).device), branches=(self.eval_branch,))
        return self.postprocess(out.branch(self.eval_branch), self.strides, image_sizes)
