"""A failing rank's own one-line message reaches the user, even when its exception cannot be pickled (issue 13)."""

from __future__ import annotations

import os

import pytest
import unpicklable

from msad.engine import launch
from msad.engine.distributed import LaunchError
from msad.errors import UsageError


def test_an_unpicklable_rank_error_is_reported_in_one_line() -> None:
    with pytest.raises(LaunchError) as info:
        launch(unpicklable.fail_unpicklably, num_procs=2, args=("the disk is made of cheese",), device="cpu")
    message = str(info.value)
    assert message == "rank 1 of 2 failed: OddError: rank one: the disk is made of cheese"
    assert "Traceback" in "".join(getattr(info.value, "__notes__", []))  # kept for --debug, not in the line


def test_more_cpu_ranks_than_cores_are_refused_before_spawning() -> None:
    with pytest.raises(UsageError, match="CPU cores"):
        launch(print, num_procs=(os.cpu_count() or 1) + 1, device="cpu")


def test_a_rank_killed_by_sigkill_is_reported_as_out_of_memory() -> None:
    from msad.errors import ResourceError

    with pytest.raises(ResourceError, match=r"rank 1 of 2 .* was killed \(SIGKILL\), usually because the machine ran out of memory"):
        launch(unpicklable.kill_rank_one, num_procs=2, device="cpu")


def test_msad_errors_cross_the_process_boundary_intact() -> None:
    """A rank's error reaches the launcher by pickle: type, message and exit code must survive it."""
    import pickle

    from msad.data.coco import DatasetError
    from msad.data.images import ImageReadError
    from msad.engine.trainer import TrainingDiverged

    for error in (ImageReadError("a.png", "not a recognised image file"), DatasetError("3 of 25 images … missing"),
                  TrainingDiverged(7, {"loss_box": float("nan")}, None), UsageError("--gpus 64: …")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and copy.exit_code == error.exit_code
