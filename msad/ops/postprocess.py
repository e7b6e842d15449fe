"""FCOS inference post-processing (AdelaiDet ``FCOSOutputs.predict_proposals``).

Per level and image: candidates are ``sigmoid(cls) > score_threshold``; they are ranked by
``sigmoid(cls) · sigmoid(ctr)`` and at most ``pre_nms_topk`` are kept; boxes are decoded from the
point and ``box_regression · stride``; the score is ``sqrt(cls · ctr)``. Per image, over all levels:
clip to the image, drop empty boxes, class-wise NMS, keep the ``max_detections`` best.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

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
    """

    def __init__(
        self,
        *,
        score_threshold: float = 0.05,
        pre_nms_topk: int = 1000,
        nms_threshold: float = 0.6,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        self.score_threshold = score_threshold
        self.pre_nms_topk = pre_nms_topk
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections

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

        results: list[Detections] = []
        for i, (height, width) in enumerate(image_sizes):
            box = boxes[i]
            box = torch.stack(
                (
                    box[:, 0].clamp(0, width),
                    box[:, 1].clamp(0, height),
                    box[:, 2].clamp(0, width),
                    box[:, 3].clamp(0, height),
                ),
                dim=1,
            )
            keep = valid[i] & (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
            box, score, label = box[keep], scores[i][keep], labels[i][keep]
            kept = batched_nms(box, score, label, self.nms_threshold)[: self.max_detections]
            results.append(Detections(boxes=box[kept], scores=score[kept], labels=label[kept].to(torch.int64)))
        return results
