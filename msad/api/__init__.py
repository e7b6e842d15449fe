"""The Python API of msad; every CLI command is a thin shell over one of these functions.

>>> from msad import api
>>> from msad.config import load_recipe
>>> recipe = load_recipe("recipes/tiny.toml")
>>> teacher = api.train_teacher(recipe, output="runs/t")          # doctest: +SKIP
>>> student = api.distill(recipe, teacher=teacher.weights, output="runs/s")  # doctest: +SKIP
>>> api.evaluate(recipe, student.weights)["metrics"]["AP"]        # doctest: +SKIP
"""

from msad.api.compare import ComparisonRow, compare
from msad.api.convert import convert_detectron2
from msad.api.convert_backbone import convert_slimmable
from msad.api.data_check import DataCheckReport, DataProblem, SplitSummary, check_data
from msad.api.evaluation import METRICS, TEACHER_BRANCHES, evaluate, evaluate_branches
from msad.api.flops import PAPER_WIDTHS, CapacityReport, CapacityRow, capacity, paper_recipe
from msad.api.plugin_listing import plugins
from msad.api.prediction import Predictor, PredictResult, predict
from msad.api.synth import synth_data
from msad.api.training import TrainResult, distill, train, train_teacher
from msad.checkpoint import Checkpoint, load_model, read_checkpoint

__all__ = [
    "ComparisonRow",
    "compare",
    "PAPER_WIDTHS",
    "CapacityReport",
    "CapacityRow",
    "capacity",
    "paper_recipe",
    "convert_detectron2",
    "convert_slimmable",
    "DataCheckReport",
    "DataProblem",
    "SplitSummary",
    "check_data",
    "METRICS",
    "TEACHER_BRANCHES",
    "evaluate",
    "evaluate_branches",
    "plugins",
    "synth_data",
    "PredictResult",
    "Predictor",
    "predict",
    "TrainResult",
    "train",
    "train_teacher",
    "distill",
    "Checkpoint",
    "load_model",
    "read_checkpoint",
]
