"""Two CPU (gloo) ranks through ``launch``: same result as one rank with the same global batch; errors propagate."""

import pytest
import torch

import toytask
from msad.engine import get_rank, get_world_size, launch
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
