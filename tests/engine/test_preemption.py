"""SIGTERM/SIGUSR1 stop training at a step boundary after a checkpoint; --resume continues bit for bit (issue 22)."""

from __future__ import annotations

import json
import signal

import pytest
import torch
import toytask

from msad.engine.preemption import EXIT_SIGTERM, EXIT_SIGUSR1, StopSignals
from msad.errors import Preempted

ARGS = (12, 0.5, 0.5, 0.0, 4)  # iters, ema, noise (exercises the RNG), sleep, checkpoint_period


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, EXIT_SIGTERM), (signal.SIGUSR1, EXIT_SIGUSR1)])
def test_a_signal_checkpoints_at_the_next_boundary_and_resume_is_exact(tmp_path, sig, status):
    reference = toytask.train(str(tmp_path / "ref"), *ARGS)
    out, before = tmp_path / "run", signal.getsignal(sig)
    # the signal arrives during iteration 6 (done = 7); the next flush boundary (log_period 2) is done = 8
    with pytest.raises(Preempted) as info:
        toytask.train(str(out), *ARGS, faults={"signal_at": (6, 0, int(sig))})
    assert info.value.exit_code == status == 128 + int(sig)
    assert signal.Signals(sig).name in str(info.value) and str(out / "last.safetensors") in str(info.value)
    assert json.loads((out / "state.json").read_text())["iteration"] == 8  # not a checkpoint_period multiple
    assert signal.getsignal(sig) is before  # the trainer's handlers are gone with it
    _same(toytask.train(str(out), *ARGS, resume=True), reference)


def test_the_time_based_checkpoint_is_written_at_log_boundaries(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(toytask.SimulatedCrash):  # checkpoint_period 0: only the clock writes checkpoints
        toytask.train(str(out), 12, 0.0, 0.0, 0.0, 0, faults={"crash_at": 7}, checkpoint_minutes=1e-9)
    assert json.loads((out / "state.json").read_text())["iteration"] == 6
    with pytest.raises(toytask.SimulatedCrash):
        toytask.train(str(tmp_path / "off"), 12, 0.0, 0.0, 0.0, 0, faults={"crash_at": 7}, checkpoint_minutes=0.0)
    assert not (tmp_path / "off" / "state.json").exists()


def test_stop_signals_restores_the_previous_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        signal.raise_signal(signal.SIGTERM)
        assert signals.received == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
