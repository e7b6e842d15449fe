"""Data: synthetic dataset, robust image reading, COCO datasets, transforms, collate, exact-resume samplers and the loaders over them."""

from msad.data.coco import CocoDetection, DatasetError, check_category_compat, load_coco_json
from msad.data.collate import PIXEL_MEAN, PIXEL_STD, Collator, collate
from msad.data.images import ImageReadError, read_image
from msad.data.loaders import build_test_loader, build_train_loader
from msad.data.samplers import InferenceSampler, TrainBatchSampler, aug_seed
from msad.data.synth import SYNTH_CATEGORIES, SynthSummary, generate_synthetic_coco
from msad.data.transforms import (
    Compose,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    build_transforms,
    resized_shape,
)

__all__ = [
    "CocoDetection",
    "DatasetError",
    "check_category_compat",
    "load_coco_json",
    "Collator",
    "collate",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "ImageReadError",
    "read_image",
    "InferenceSampler",
    "TrainBatchSampler",
    "aug_seed",
    "build_test_loader",
    "build_train_loader",
    "SYNTH_CATEGORIES",
    "SynthSummary",
    "generate_synthetic_coco",
    "Compose",
    "RandomHorizontalFlip",
    "ResizeShortestEdge",
    "build_transforms",
    "resized_shape",
]
