"""Two CPU (gloo) ranks through ``launch``: same result as one rank with the same global batch; errors propagate."""

import pytest
import torch
import toytask

from msad.comm import get_rank, get_world_size
from msad.engine import launch
from msad.engine.metrics import read_metrics


@pytest.mark.timeout(180)  # a rank missing a collective would hang
def test_two_gloo_ranks_match_one_rank(tmp_path):
    # iters, ema, noise (must be 0: the per-sample noise draws from per-rank RNGs), sleep, checkpoint_period
    args = (12, 0.5, 0.0, 0.0, 4)
    two = launch(toytask.train, num_procs=2, args=(str(tmp_path / "two"), *args), device="cpu")
    one = toytask.train(str(tmp_path / "one"), *args)
    assert two is not None and two.keys() == one.keys()
    for key in one:
        assert torch.allclose(two[key], one[key], atol=1e-5, rtol=0), (key, two[key], one[key])
    assert not torch.allclose(one["model.weight"], toytask.ToyTask().model.weight)  # it did train
    # rank 0 wrote the run; the evaluation (sharded over the ranks and gathered) ran at 4, 8, 12
    evals = [r for r in read_metrics(tmp_path / "two" / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["iteration"] for r in evals] == [4, 8, 12]
    assert sorted(p.name for p in (tmp_path / "two").glob("model_*")) == sorted(
        p.name for p in (tmp_path / "one").glob("model_*"))


def test_loader_factory_splits_the_global_batch_by_rank():
    factory = toytask.make_loader(3, 8)
    whole = next(factory(5, 0, 1))
    parts = [next(factory(5, rank, 2)) for rank in range(2)]
    assert torch.equal(torch.cat([p.x for p in parts]), whole.x) and torch.equal(torch.cat([p.y for p in parts]), whole.y)
    assert torch.equal(next(factory(5, 1, 2)).x, parts[1].x)  # a pure function of (seed, iteration, rank)


@pytest.mark.timeout(120)
def test_launch_reraises_a_rank_error_with_its_type():
    with pytest.raises(KeyError, match="boom") as info:
        launch(toytask.fail_on_rank_one, num_procs=2, args=("boom",), device="cpu")
    assert any("rank 1 of 2" in note for note in getattr(info.value, "__notes__", []))


def test_launch_single_process_runs_inline():
    assert launch(lambda: (get_rank(), get_world_size()), num_procs=1) == (0, 1)


def _bn_net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())


def _has_sync_bn(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.SyncBatchNorm) for m in module.modules())


@pytest.mark.parametrize(
    ("setting", "world_size", "device", "converted", "note"),
    [
        ("auto", 2, "cuda", True, "synchronised across 2 ranks"),
        (True, 8, "cuda", True, "synchronised across 8 ranks"),
        ("auto", 1, "cuda", False, None),  # one rank: nothing to synchronise
        (False, 2, "cuda", False, None),
        ("auto", 2, "cpu", False, None),  # gloo ranks: SyncBatchNorm needs CUDA
        (True, 2, "cpu", False, "needs CUDA"),
    ],
)
def test_sync_batchnorm_decision(setting, world_size, device, converted, note):
    from msad.engine.distributed import sync_batchnorm

    model, said = sync_batchnorm(_bn_net(), setting=setting, world_size=world_size, device_type=device)
    assert _has_sync_bn(model) is converted
    assert (said is None) if note is None else (note in said)


def test_sync_batchnorm_leaves_models_without_batchnorm_and_checks_the_setting():
    from msad.engine.distributed import sync_batchnorm

    gn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
    assert sync_batchnorm(gn, setting="auto", world_size=4, device_type="cuda") == (gn, None)
    with pytest.raises(ValueError, match="sync_bn"):
        sync_batchnorm(gn, setting="yes", world_size=4, device_type="cuda")


def test_sync_batchnorm_of_a_student_keeps_the_frozen_teacher_per_gpu(tmp_path):
    """What the trainer converts is ``task.model``: the teacher (``task.frozen``) keeps plain BatchNorm."""
    from pathlib import Path

    from msad.build import build_criterion, build_postprocess
    from msad.config import load_recipe
    from msad.engine.distributed import sync_batchnorm
    from msad.roles import build_model
    from msad.tasks.student import StudentTask

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "tiny.toml", overrides=['data.val_annotations=""'])
    assert recipe.run.sync_bn == "auto"  # on by default wherever it applies
    teacher = build_model(recipe, role="teacher", num_classes=2)
    student = build_model(recipe, role="student", num_classes=2, teacher=teacher)
    task = StudentTask(model=student, teacher=teacher, distill_loss=lambda s, t: 0, teacher_bn="train", input_factor=2,
                       criterion=build_criterion(recipe, num_classes=2), postprocess=build_postprocess(recipe))
    assert teacher not in list(task.model.modules()) and list(task.frozen.values()) == [teacher]
    task.model, _ = sync_batchnorm(task.model, setting="auto", world_size=8, device_type="cuda")
    assert _has_sync_bn(task.model)
    assert not _has_sync_bn(task.teacher) and any(isinstance(m, torch.nn.BatchNorm2d) for m in task.teacher.modules())
