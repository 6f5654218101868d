"""Writing result and record files so that a crash never leaves a half-written one; durations for run logs;
the W&B group of the runs a runner starts."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


__all__ = ["RUN_GROUP_ENV", "format_duration", "run_group", "write_atomically"]
