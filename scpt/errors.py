"""Which failures are a user's to fix, and how the ``scpt`` console script words them.

``scpt`` prints an *expected* failure as one short message, ``scpt COMMAND: error: ...``, and exits 2;
anything else is a bug and keeps its traceback. ``--traceback`` (anywhere on the command line) or
``SCPT_DEBUG=1`` shows the traceback of an expected failure too. Expected are (CONTRIBUTING.md, "Errors"):

- :class:`UserError`, raised by scpt for anything a user can fix (bad argument value, unknown config
  key, unreadable input file, a file that is not a checkpoint);
- ``ValueError``, ``TypeError``, ``LookupError``, ``RuntimeError`` and ``OSError`` (``FileNotFoundError``
  with scpt's own message) raised by a ``raise`` statement in
  scpt's own code (scpt's validation: ``DSCLLoss: alpha must be in [0, 1], got 1.5``, the data readers'
  ``DataFormatError``, ``EncoderLoadError``), also when a library wraps them (jsonargparse instantiating
  a loss): the innermost one raised by scpt is the message;
- ``OSError`` about a named file (``FileNotFoundError``, ``FileExistsError``, ``PermissionError``, ...);
- Lightning's ``MisconfigurationException`` (its own word for a user's mistake).

A ``ValueError`` raised inside torch or transformers, an ``AssertionError``, an ``AttributeError``, a
``KeyError`` from a dict lookup in scpt's code: all bugs, all shown with their traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

#: The environment variable that, set to 1, makes every expected failure show its traceback.
DEBUG_ENV = "SCPT_DEBUG"

#: The command-line flag (accepted anywhere after ``scpt``) that does the same.
TRACEBACK_FLAG = "--traceback"

_PACKAGE_DIR = Path(__file__).resolve().parent

#: Exception types that count as expected when a ``raise`` statement in scpt's code raised them.
_RAISED_BY_SCPT = (ValueError, TypeError, LookupError, RuntimeError, OSError)

#: Lightning's exception for a user's misconfiguration (matched by name: Lightning may not be imported).
_LIGHTNING_USER_ERRORS = ("MisconfigurationException",)


class UserError(Exception):
    """An expected failure that the user can fix; the message names the culprit (file and line, key, value)."""


def debug_requested(argv: list[str]) -> bool:
    """Whether ``argv`` holds :data:`TRACEBACK_FLAG` or ``$SCPT_DEBUG`` is set (to anything but 0 or empty)."""
    return TRACEBACK_FLAG in argv or os.environ.get(DEBUG_ENV, "0") not in ("", "0")


def _raised_by_scpt(error: BaseException) -> bool:
    """Whether ``error`` was raised by a ``raise`` statement in a file of the scpt package."""
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ is not None else []
    if not frames:
        return False
    innermost = frames[-1]
    try:
        in_scpt = Path(innermost.filename).resolve().is_relative_to(_PACKAGE_DIR)
    except (OSError, ValueError):
        return False
    return in_scpt and (innermost.line or "").lstrip().startswith("raise")


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from (``__cause__``, else ``__context__``), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def _is_expected_one(error: BaseException) -> bool:
    if isinstance(error, UserError):
        return True
    if isinstance(error, OSError) and error.filename is not None and not isinstance(error, TimeoutError):
        return True
    if any(cls.__name__ in _LIGHTNING_USER_ERRORS for cls in type(error).__mro__):
        return True
    return isinstance(error, _RAISED_BY_SCPT) and _raised_by_scpt(error)


def expected_cause(error: BaseException) -> BaseException | None:
    """The exception to report for ``error`` when it is an expected failure, else ``None`` (a bug).

    The innermost expected exception of the chain is the culprit: jsonargparse wraps a loss's own
    ``ValueError`` in a ``ValueError`` about union subtypes, which only adds noise.
    """
    if isinstance(error, UserError):  # scpt's own wording, already the right one
        return error
    expected = [link for link in _chain(error) if _is_expected_one(link)]
    return expected[-1] if expected else None


def message_of(error: BaseException) -> str:
    """The text printed for an expected failure: its message (or the OS error's, with the file)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip()
    return text or type(error).__name__


def report(prefix: str, error: BaseException, debug: bool) -> int | None:
    """Print ``prefix: error: <message>`` for an expected ``error`` and return 2, or ``None`` for a bug
    (or under ``debug``), which the caller re-raises so that its traceback shows."""
    cause = expected_cause(error)
    if cause is None or debug:
        return None
    print(f"{prefix}: error: {message_of(cause)}", file=sys.stderr)
    return 2


__all__ = ["DEBUG_ENV", "TRACEBACK_FLAG", "UserError", "debug_requested", "expected_cause", "message_of", "report"]
