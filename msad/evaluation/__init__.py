"""msad.evaluation: COCO box evaluation (pycocotools), sharded across ranks and gathered."""

from msad.evaluation.coco_eval import METRIC_NAMES, CocoEvaluator

__all__ = ["METRIC_NAMES", "CocoEvaluator"]
