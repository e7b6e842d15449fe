"""SIGTERM/SIGUSR1 end a command like Ctrl-C: one line, exit status 128 + the signal (issues 22, 23)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from msad.api.run_errors import user_situations
from msad.errors import Interrupted, Terminated


@pytest.fixture
def restore_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_a_signal_ends_a_command_with_one_line(monkeypatch, capsys, restore_handlers, sig, status):
    from msad.cli import main as cli

    def app(**_):  # a command that is busy when the signal comes (eval, compare…)
        signal.raise_signal(sig)
        time.sleep(5)

    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == status
    assert capsys.readouterr().err.strip() == f"msad: stopped by {signal.Signals(sig).name}"


def test_a_signal_inside_evaluation_or_training_says_what_stopped_and_where_to_resume(tmp_path):
    with pytest.raises(Interrupted) as info, user_situations("evaluation"):
        raise Terminated(signal.SIGTERM)
    assert str(info.value) == "evaluation stopped by SIGTERM" and info.value.exit_code == 143
    with pytest.raises(Interrupted) as info, user_situations("training", output=tmp_path):
        raise Terminated(signal.SIGTERM)
    assert str(info.value).startswith("training stopped by SIGTERM; no checkpoint was written in")
    with pytest.raises(Interrupted) as info, user_situations("evaluation"):
        raise KeyboardInterrupt
    assert info.value.exit_code == 130


def test_final_messages_come_from_rank_zero_only(capsys):
    from msad import api
    from msad.cli.commands import _report

    _report(api.TrainResult(Path("run"), Path("run/last.safetensors"), {}, rank=1))  # a torchrun rank > 0
    assert capsys.readouterr().out == ""
    _report(api.TrainResult(Path("run"), Path("run/last.safetensors"), {}))
    assert "weights: run/last.safetensors" in capsys.readouterr().out
