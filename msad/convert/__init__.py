"""Converters from other checkpoint layouts to msad weights (pure state-dict mappings, no file writing)."""

from msad.convert.coco_classes import COCO_2017_CLASSES
from msad.convert.detectron2 import (
    DETECTRON2_PIXEL_MEAN_RGB,
    ORIGINAL_WIDTHS,
    convert_detectron2_state,
    detectron2_num_classes,
    detectron2_role,
    detectron2_width,
    fold_input_normalization,
    load_detectron2_checkpoint,
)

__all__ = [
    "COCO_2017_CLASSES",
    "DETECTRON2_PIXEL_MEAN_RGB",
    "ORIGINAL_WIDTHS",
    "convert_detectron2_state",
    "detectron2_num_classes",
    "detectron2_role",
    "detectron2_width",
    "fold_input_normalization",
    "load_detectron2_checkpoint",
]
