"""The CLI's error boundary: msad's own errors are one line with their exit code, anything else is a bug."""

from __future__ import annotations

import errno

import pytest

from msad.cli.errors import exit_code, one_line
from msad.cli.main import main
from msad.errors import CheckpointError, DataError, RecipeError, UsageError


def _plugins_raise(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make the ``msad plugins`` command fail inside msad with ``error``."""

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("msad.plugins.list_plugins", fail)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


def test_an_internal_value_error_is_reported_as_a_bug(monkeypatch, capsys) -> None:
    _plugins_raise(monkeypatch, ValueError("tensor sizes differ"))
    code, err = _run(["plugins"], capsys)
    assert code == 1
    assert err == (
        "msad: error: internal error (ValueError: tensor sizes differ); rerun with --debug for the traceback\n"
    )


def test_debug_shows_the_internal_error_itself(monkeypatch) -> None:
    _plugins_raise(monkeypatch, ValueError("tensor sizes differ"))
    with pytest.raises(ValueError, match="tensor sizes differ"):
        main(["--debug", "plugins"])


@pytest.mark.parametrize(
    ("error", "code"),
    [(RecipeError("solver.lr: must be > 0"), 3), (UsageError("--branch applies to teacher weights"), 2),
     (CheckpointError("w.safetensors: truncated"), 1)],
)
def test_a_user_error_stays_one_line_with_its_exit_code(error, code, monkeypatch, capsys) -> None:
    _plugins_raise(monkeypatch, error)
    got, err = _run(["plugins"], capsys)
    assert (got, err) == (code, f"msad: error: {error}\n")


class _BadImage(DataError, ValueError):
    """Like msad's data errors: an MsadError that is also a ValueError for Python callers."""


@pytest.mark.parametrize(
    ("error", "user"),
    [(ValueError("x"), False), (TypeError("x"), False), (ImportError("x"), False), (KeyError("x"), False),
     (_BadImage("x"), True), (RecipeError("x"), True), (FileNotFoundError("x"), True), (PermissionError("x"), True)],
)
def test_only_msad_errors_and_path_refusals_are_user_errors(error: BaseException, user: bool) -> None:
    assert ("internal error" not in one_line(error)) is user
    assert exit_code(error) == getattr(error, "exit_code", 1)


@pytest.mark.parametrize(("code", "words"), [
    (errno.ENOSPC, "no space left on the device (out/a.png); free disk space"),
    (errno.EMFILE, "too many open files (out/a.png); raise the limit (`ulimit -n`) or lower data.num_workers"),
])
def test_a_resource_os_error_anywhere_is_the_resource_error(monkeypatch, capsys, code: int, words: str) -> None:
    _plugins_raise(monkeypatch, OSError(code, "os words", "out/a.png"))
    status, err = _run(["plugins"], capsys)
    assert status == 1 and err == f"msad: error: {words}\n"
