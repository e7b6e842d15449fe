"""FCOS inference post-processing (AdelaiDet ``FCOSOutputs.predict_proposals``).

Per level and image: candidates are ``sigmoid(cls) > score_threshold``; they are ranked by
``sigmoid(cls) · sigmoid(ctr)`` and at most ``pre_nms_topk`` are kept; boxes are decoded from the
point and ``box_regression · stride``; the score is ``sqrt(cls · ctr)``. Per image, over all levels, in the
reference's order: class-wise NMS and the ``max_detections`` cut on the *unclipped* boxes (AdelaiDet
``select_over_all_levels``), then clip to the image and drop empty boxes (detectron2 ``detector_postprocess``),
so an image can end with fewer than ``max_detections``. ``clip_before_nms=True`` restores the other order
(clip and drop first, then NMS and the cut), which never returns fewer than it could.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from msad.ops.boxes import decode_ltrb
from msad.ops.points import points_for_level
from msad.structures import Detections, LevelOutputs

__all__ = ["FCOSPostProcess"]


class FCOSPostProcess(nn.Module):
    """Turn head outputs into per-image :class:`~msad.structures.Detections`.

    Args:
        score_threshold: minimum ``sigmoid(cls)`` of a candidate.
        pre_nms_topk: candidates kept per level and image before NMS.
        nms_threshold: IoU threshold of the class-wise NMS.
        max_detections: detections kept per image.
        clip_before_nms: clip and drop empty boxes before NMS and the cut instead of after them (not the
            reference's order).
    """

    def __init__(
        self,
        *,
        score_threshold: float = 0.05,
        pre_nms_topk: int = 1000,
        nms_threshold: float = 0.6,
        max_detections: int = 100,
        clip_before_nms: bool = False,
    ) -> None:
        super().__init__()
        self.score_threshold = score_threshold
        self.pre_nms_topk = pre_nms_topk
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections
        self.clip_before_nms = clip_before_nms

    def _level_candidates(
        self, out: LevelOutputs, stride: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Top candidates of one level for the whole batch.

        Returns ``boxes [B, K, 4]``, ``scores [B, K]`` (``sqrt(cls·ctr)``), ``labels [B, K]`` and
        ``valid [B, K]`` (whether the slot holds a real candidate).
        """
        b, c, h, w = out.cls_logits.shape
        cls = out.cls_logits.float().sigmoid().permute(0, 2, 3, 1).reshape(b, h * w * c)
        ctr = out.centerness.float().sigmoid().permute(0, 2, 3, 1).reshape(b, h * w, 1)
        reg = out.box_regression.float().permute(0, 2, 3, 1).reshape(b, h * w, 4) * stride
        ranking = (cls.reshape(b, h * w, c) * ctr).reshape(b, h * w * c)
        candidate = cls > self.score_threshold
        ranking = torch.where(candidate, ranking, torch.full_like(ranking, -1.0))
        k = min(self.pre_nms_topk, h * w * c)
        top_scores, top_index = ranking.topk(k, dim=1)
        valid = top_scores >= 0
        point_index = torch.div(top_index, c, rounding_mode="floor")
        labels = top_index % c
        points = points_for_level(h, w, stride, device=cls.device)[point_index]  # [B, K, 2]
        ltrb = reg.gather(1, point_index[..., None].expand(b, k, 4))
        boxes = decode_ltrb(points, ltrb)
        scores = torch.sqrt(top_scores.clamp(min=0.0))
        return boxes, scores, labels, valid

    @torch.no_grad()
    def forward(
        self,
        outputs: Mapping[str, LevelOutputs],
        strides: Mapping[str, int],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[Detections]:
        """Detections per image, in the frame of ``strides``, clipped to ``image_sizes`` (``(h, w)`` each)."""
        levels = [self._level_candidates(out, strides[lvl]) for lvl, out in outputs.items()]
        boxes = torch.cat([lv[0] for lv in levels], dim=1)
        scores = torch.cat([lv[1] for lv in levels], dim=1)
        labels = torch.cat([lv[2] for lv in levels], dim=1)
        valid = torch.cat([lv[3] for lv in levels], dim=1)
        if len(image_sizes) != boxes.shape[0]:
            raise ValueError(f"{len(image_sizes)} image sizes for a batch of {boxes.shape[0]} images")

        from torchvision.ops import batched_nms  # importing torchvision costs seconds: only where NMS runs

        results: list[Detections] = []
        for i, size in enumerate(image_sizes):
            box, score, label = boxes[i][valid[i]], scores[i][valid[i]], labels[i][valid[i]]
            if self.clip_before_nms:
                box, score, label = _clip_and_drop_empty(box, score, label, size)
            kept = batched_nms(box, score, label, self.nms_threshold)[: self.max_detections]
            box, score, label = box[kept], score[kept], label[kept]
            if not self.clip_before_nms:
                box, score, label = _clip_and_drop_empty(box, score, label, size)
            results.append(Detections(boxes=box, scores=score, labels=label.to(torch.int64)))
        return results


def _clip_and_drop_empty(
    boxes: Tensor, scores: Tensor, labels: Tensor, size: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Clip ``boxes`` to an image of ``size`` ``(h, w)`` and drop those left with no width or height."""
    height, width = size
    boxes = torch.stack(
        (
            boxes[:, 0].clamp(0, width),
            boxes[:, 1].clamp(0, height),
            boxes[:, 2].clamp(0, width),
            boxes[:, 3].clamp(0, height),
        ),
        dim=1,
    )
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep], scores[keep], labels[keep]
