"""Ranks under torch's elastic agent: a restarted group resumes its own run; a killed rank costs a restart (issue 22)."""

from __future__ import annotations

import json

import pytest
import torch
import toytask

from msad.engine import launch
from msad.engine.elastic import _rebuild
from msad.errors import Preempted, UsageError

ARGS = (12, 0.5, 0.0, 0.0, 4)  # iters, ema, noise (0: per-rank RNG draws would differ from one rank), sleep, period


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("crash_at", [9, 2])  # after the checkpoint at 8; before any checkpoint
def test_a_restarted_group_continues_its_run_without_resume(tmp_path, monkeypatch, crash_at):
    reference = toytask.train(str(tmp_path / "ref"), 12, 0.5, 0.5, 0.0, 4)
    out = str(tmp_path / "run")
    with pytest.raises(toytask.SimulatedCrash):
        toytask.train(out, 12, 0.5, 0.5, 0.0, 4, faults={"crash_at": crash_at})
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # what the agent sets in a restarted group
    _same(toytask.train(out, 12, 0.5, 0.5, 0.0, 4), reference)  # no resume=True: the restart implies it


def test_a_restart_never_forces_over_a_run_that_checkpointed(tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    with pytest.raises(toytask.SimulatedCrash):
        toytask.train(out, *ARGS, faults={"crash_at": 6})
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    from msad.engine import Trainer

    solver, run = toytask.settings(tmp_path / "run")
    trainer = Trainer(toytask.ToyTask(), solver=solver, run=run, make_train_loader=toytask.make_loader(3, 8),
                      force=True, echo=lambda _: None)  # --force at first launch must not wipe the state on restart
    trainer.fit()
    assert json.loads((tmp_path / "run" / "environment.json").read_text())["resumed_from"] == 4


def test_a_rank_record_is_rebuilt_with_its_type_message_and_exit_code():
    record = {"rank": 1, "module": "msad.errors", "type": "Preempted", "args": ["stopped"], "message": "stopped",
              "exit_code": 138, "traceback": "Traceback …"}
    error = _rebuild(record, 2)
    assert isinstance(error, Preempted) and str(error) == "stopped" and error.exit_code == 138
    error = _rebuild({**record, "module": "msad.errors", "type": "UsageError", "exit_code": 2}, 2)
    assert isinstance(error, UsageError) and error.exit_code == 2
    error = _rebuild({**record, "module": "nowhere.imported", "type": "Odd", "message": "a\nlast line"}, 2)
    assert str(error) == "rank 1 of 2 failed: Odd: last line"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_rank_restarts_the_group_and_a_signal_stops_both_ranks(tmp_path):
    """2 gloo ranks. Rank 1 is SIGKILLed after the checkpoint at 4 (once: a marker file): the agent restarts both,
    they resume from it and the run ends normally, bit-identical to an uninterrupted one. Then a SIGTERM to rank 1
    alone stops both at the same boundary with a checkpoint (exit status 143, no restart), and --resume is exact."""
    reference = launch(toytask.train, num_procs=2, args=(str(tmp_path / "ref"), *ARGS), device="cpu")
    faults = {"kill_at": 6, "marker": str(tmp_path / "killed")}
    restarted = launch(toytask.train, num_procs=2, args=(str(tmp_path / "kill"), *ARGS, False, faults), device="cpu",
                       max_restarts=1)
    assert (tmp_path / "killed").exists()
    _same(restarted, reference)

    out = str(tmp_path / "stop")
    with pytest.raises(Preempted) as info:
        launch(toytask.train, num_procs=2, args=(out, *ARGS, False, {"signal_at": (6, 1, 15)}), device="cpu",
               max_restarts=1)
    assert info.value.exit_code == 143 and "SIGTERM" in str(info.value)
    assert json.loads((tmp_path / "stop" / "state.json").read_text())["iteration"] == 8
    _same(launch(toytask.train, num_procs=2, args=(out, *ARGS, True), device="cpu"), reference)
