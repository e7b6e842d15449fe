"""The paper recipes against the reference MSAD configs, value by value (docs/reference-configs.md).

The expected values are typed from the reference configs (dvlab-research/MSAD configs/*.yaml, msad/config.py and
detectron2 v0.2.1 defaults), not read from msad.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from msad.config import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

#: width → (teacher batch, lr, iters, steps), (student batch, lr, iters, steps)
SCHEDULES = {
    "w025": ((16, 0.01, 90000, [60000, 80000]), (32, 0.02, 45000, [30000, 40000])),
    "w050": ((8, 0.01, 180000, [120000, 160000]), (32, 0.01, 45000, [30000, 40000])),
    "w075": ((8, 0.01, 180000, [120000, 160000]), (32, 0.02, 45000, [30000, 40000])),
    "w100": ((8, 0.01, 180000, [120000, 160000]), (16, 0.01, 90000, [60000, 80000])),
}
WIDTHS = {"w025": 0.25, "w050": 0.5, "w075": 0.75, "w100": 1.0}
#: width → the reference teacher's MODEL.SLRESNETS.NORM: SyncBN, except BN (per-GPU) for the w0.5 and w0.75 teachers
TEACHER_SYNC_BN = {"w025": "auto", "w050": False, "w075": False, "w100": "auto"}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_width_recipe_matches_the_reference(name: str) -> None:
    recipe = load_recipe(RECIPES / f"{name}.toml")
    backbone = recipe.model.backbone
    assert backbone.name == "slimmable_resnet"
    assert backbone.options["width"] == WIDTHS[name] and backbone.options["depth"] == 50
    assert backbone.options["freeze_at"] == 0 and backbone.options["norm"] == "bn"  # FREEZE_AT -1
    assert recipe.run.sync_bn == "auto"  # SyncBN for every student (and baseline) on several GPUs
    assert recipe.sync_bn_for("distill") == "auto" and recipe.sync_bn_for("teacher") == TEACHER_SYNC_BN[name]
    assert recipe.model.neck.name == "fpn" and recipe.model.neck.options["out_channels"] == 256
    assert recipe.model.head.options == {"num_convs": 4, "norm": "gn", "box_init": "normal"}  # N(0, 0.01) box layer
    loss, post = recipe.model.loss, recipe.model.postprocess
    assert (loss.focal_alpha, loss.focal_gamma, loss.center_radius) == (0.25, 2.0, 1.5)
    assert (post.score_threshold, post.pre_nms_topk, post.nms_threshold, post.max_detections) == (0.05, 1000, 0.6, 100)
    data = recipe.data
    assert data.train_sizes == [640, 672, 704, 736, 768, 800] and data.max_size == 1333 and data.test_size == 800
    assert data.flip_prob == 0.5 and data.size_divisibility == 32 and data.scale == 1.0
    assert data.group_aspect_ratio is True  # DATALOADER.ASPECT_RATIO_GROUPING
    teacher = recipe.teacher
    assert teacher.k == 2 and teacher.size_divisibility == 256 and teacher.eval_branch == "fused"
    assert teacher.loss_weights.model_dump() == {"hr": 1.0, "lr": 1.0, "fused": 0.4} and teacher.fusion_hidden == 32
    assert teacher.bn == "shared"
    distill = recipe.distill
    assert distill.loss.name == "msad_l1" and distill.loss.options == {"alpha": 0.2, "temperature": 3.0}
    assert (distill.kd_weight, distill.ramp_iters, distill.teacher_bn) == (1.0, 500, "train")
    for stage, expected in zip(("teacher", "distill"), SCHEDULES[name], strict=True):
        s = recipe.solver_for(stage)
        assert (s.batch_size, s.lr, s.iters, s.steps) == expected, stage
        assert (s.momentum, s.weight_decay, s.weight_decay_norm, s.weight_decay_bias) == (0.9, 1e-4, 0.0, None)
        assert (s.gamma, s.warmup_iters, s.warmup_factor, s.clip_grad_norm, s.amp, s.ema_decay) == (0.1, 500, 0.001, 0.0, "off", 0.0)
    assert recipe.run.eval_period == 0
    assert (recipe.run.checkpoint_period, recipe.run.checkpoint_minutes, recipe.run.dist_timeout_minutes) == (5000, 30.0, 30.0)


def test_every_paper_recipe_points_to_the_reference_table() -> None:
    assert (RECIPES.parent / "docs" / "reference-configs.md").is_file()
    for recipe in (RECIPES / "coco.toml", *(RECIPES / f"{n}.toml" for n in SCHEDULES)):
        assert "docs/reference-configs.md" in recipe.read_text(encoding="utf-8"), recipe.name


def test_aspect_ratio_grouping_is_off_outside_the_paper_recipes() -> None:
    others = [p for p in RECIPES.glob("*.toml") if p.stem != "coco" and p.stem not in SCHEDULES]
    assert others
    for path in others:
        assert load_recipe(path, overrides=[]).data.group_aspect_ratio is False, path.name
