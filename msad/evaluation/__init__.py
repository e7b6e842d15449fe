"""msad.evaluation: COCO box evaluation (pycocotools or faster-coco-eval), sharded across ranks and gathered."""

from msad.evaluation.coco_eval import EVAL_BACKENDS, METRIC_NAMES, CocoEvaluator, require_backend

__all__ = ["EVAL_BACKENDS", "METRIC_NAMES", "CocoEvaluator", "require_backend"]
