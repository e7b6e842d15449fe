"""``msad.api.evaluate`` on validation sets the docs accept (issue 23)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from msad import api
from msad.config import Recipe


def test_a_validation_set_with_a_subset_of_the_training_classes_is_evaluated(
    tiny_recipe: Recipe, trained_baseline: api.TrainResult, tmp_path: Path
) -> None:
    val = json.loads(Path(tiny_recipe.data.val_annotations).read_text())
    dropped = max(val["categories"], key=lambda c: c["id"])
    val["categories"] = [c for c in val["categories"] if c["id"] != dropped["id"]]
    val["annotations"] = [a for a in val["annotations"] if a["category_id"] != dropped["id"]]
    subset = tmp_path / "val_subset.json"
    subset.write_text(json.dumps(val))
    recipe = tiny_recipe.model_copy(update={"data": tiny_recipe.data.model_copy(update={"val_annotations": str(subset)})})
    report = api.evaluate(recipe, trained_baseline.weights, per_class=True, results_out=tmp_path / "results.json")
    assert set(report["metrics"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert math.isnan(report["per_class"][dropped["name"]])  # no ground truth for it: undefined, not 0
    assert len(report["per_class"]) == len(val["categories"]) + 1
