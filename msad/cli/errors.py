"""How the CLI reports an exception: one line and an exit code."""

from __future__ import annotations

from msad.errors import MsadError, resource_error

__all__ = ["exit_code", "one_line", "user_error", "USER_ERRORS"]

#: Exception types whose message is meant for the user as it is: msad's own errors and the operating system's
#: refusals of a path the user gave. Anything else (a ``ValueError`` or ``TypeError`` from inside msad…) is a bug
#: and is reported as an internal error.
USER_ERRORS: tuple[type[BaseException], ...] = (
    MsadError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError,
)


def user_error(err: BaseException) -> BaseException:
    """``err``, or the :class:`~msad.errors.ResourceError` it means (a full disk, too many open files…) wherever
    it was raised."""
    return resource_error(err, "") or err


def exit_code(err: BaseException) -> int:
    """The process exit status for ``err``: its ``exit_code`` when it has one, else 1."""
    err = user_error(err)
    code = getattr(err, "exit_code", 1)
    return code if isinstance(code, int) and code > 0 else 1


def one_line(err: BaseException) -> str:
    """``err`` as a single line; internal errors name their type and suggest ``--debug``."""
    err = user_error(err)
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, FileNotFoundError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    if isinstance(err, USER_ERRORS):
        return text
    return f"internal error ({type(err).__name__}: {text}); rerun with --debug for the traceback"
