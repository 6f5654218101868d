"""Writing result and record files so that a crash never leaves a half-written one; durations for run logs;
the W&B group of the runs a runner starts; which arguments of a recorded run only change what is printed."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scpt.errors import UserError

#: The environment variable W&B reads a new run's group from (also offline).
RUN_GROUP_ENV = "WANDB_RUN_GROUP"


def write_atomically(path: str | Path, text: str, overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``; refuse to clobber unless asked.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (remove it or choose another path)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def format_duration(seconds: float) -> str:
    """``seconds`` as ``"45s"``, ``"4m12s"`` or ``"1h02m03s"`` (rounded to the second; negative -> 0)."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


@contextmanager
def run_group(group: str) -> Iterator[str]:
    """Group the W&B runs started inside (``scpt pipeline``'s stages, ``scpt finetune seeds``' seeds) under
    ``group``, through ``$WANDB_RUN_GROUP``; a group already set wins (a sweep's trial keeps the sweep's).
    The variable is restored on exit. Yields the group in effect."""
    previous = os.environ.get(RUN_GROUP_ENV)
    os.environ[RUN_GROUP_ENV] = previous or group
    try:
        yield os.environ[RUN_GROUP_ENV]
    finally:
        if previous is None:
            os.environ.pop(RUN_GROUP_ENV, None)
        else:
            os.environ[RUN_GROUP_ENV] = previous


def read_record(path: Path) -> dict[str, Any]:
    """A JSON object that scpt wrote (a stage's ``stage.json``, a seed's ``result.json``, a ``summary.json``).

    Raises:
        UserError: naming the file when it is not a JSON object (e.g. truncated by a full disk).
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(
            f"{path}: not a record scpt wrote ({error}); move it away or remove it to redo its run"
        ) from None
    if not isinstance(record, dict):
        raise UserError(f"{path}: not a record scpt wrote (expected a JSON object); move it away or remove it")
    return record


def corrupt_entry(archive: Path) -> str | None:
    """The first entry of a zip archive (what ``torch.save`` writes) whose CRC-32 does not match its data, or
    ``None`` when every entry checks out. torch itself does not verify them, so a checkpoint damaged on disk
    or in transfer would load, and export, wrong weights without a word. Reads the whole file."""
    with zipfile.ZipFile(archive) as opened:
        return opened.testzip()


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path`` (``safe_load``).

    Raises:
        UserError: one line naming the file, and the line and column of a syntax error, or the byte that is
            not UTF-8.
    """
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: not valid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None


#: Lightning CLI options that change only what is printed: a rerun that differs from a recorded run only in these
#: is the same run (``scpt pipeline`` stages, ``scpt finetune seeds`` seeds).
DISPLAY_ARGS = ("--trainer.enable_progress_bar",)


def without_display_args(args: Sequence[str]) -> list[str]:
    """``args`` less the options of :data:`DISPLAY_ARGS` and their values (``--opt value``, ``--opt=value``; a
    following ``--option`` is not taken for a value):
    ``["--a", "1", "--trainer.enable_progress_bar", "false"]`` -> ``["--a", "1"]``."""
    kept: list[str] = []
    value_may_follow = False
    for arg in args:
        if value_may_follow and not arg.startswith("--"):
            value_may_follow = False
            continue
        value_may_follow = arg in DISPLAY_ARGS
        if not value_may_follow and not arg.startswith(tuple(f"{option}=" for option in DISPLAY_ARGS)):
            kept.append(arg)
    return kept


__all__ = [
    "DISPLAY_ARGS",
    "RUN_GROUP_ENV",
    "corrupt_entry",
    "format_duration",
    "read_record",
    "read_yaml",
    "run_group",
    "without_display_args",
    "write_atomically",
]
