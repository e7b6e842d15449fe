"""One run per output directory: an OS lock, refused in one line, released by the kernel when its holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from msad.errors import RunStateError
from msad.run_lock import LOCK_FILE, RunInUseError, hold_run_directory, run_lock

REPO = Path(__file__).resolve().parents[2]


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with run_lock(out) as lock:
        assert lock == out / LOCK_FILE and lock.read_text().strip() == str(os.getpid())
        with pytest.raises(RunInUseError, match=f"{out} is in use by another msad run \\(pid {os.getpid()}\\)"):
            with run_lock(out):
                pass
        assert lock.exists()  # the refused one took nothing away
    assert isinstance(RunInUseError("x"), RunStateError)


def test_release_leaves_nothing_and_a_fresh_directory_goes_if_empty(tmp_path: Path) -> None:
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    kept.mkdir()
    with run_lock(fresh), run_lock(kept):
        pass
    assert not fresh.exists() and list(kept.iterdir()) == []
    with run_lock(fresh):
        (fresh / "metrics.jsonl").write_text("")
    assert [p.name for p in fresh.iterdir()] == ["metrics.jsonl"]
    with run_lock(fresh):  # free again
        pass


def test_a_killed_holder_leaves_the_directory_free(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time\nfrom msad.run_lock import run_lock\nwith run_lock({str(out)!r}):\n"
         "    print('held', flush=True)\n    time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInUseError, match=f"pid {holder.pid}"):
            with run_lock(out):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_FILE).exists()  # the file stays after a crash, the lock does not
    with run_lock(out):
        pass


def test_under_torchrun_only_global_rank_0_takes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "1")
    with hold_run_directory(out):
        assert not out.exists()
    monkeypatch.setenv("RANK", "0")
    with hold_run_directory(out):
        with pytest.raises(RunInUseError):
            with run_lock(out):
                pass


def test_a_file_is_not_a_run_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(RunStateError, match="is a file"):
        with run_lock(tmp_path / "f"):
            pass
