"""Progress of long runs when no progress bar can show it: periodic log lines.

Lightning's progress bar redraws one terminal line; written to a file or a pipe (a batch job, ``scpt
pipeline > log``, CI) it is either off or a smear of carriage returns. :class:`ProgressLog` prints, on
the global-zero process, one plain line every ``every_n_steps`` optimiser steps or every
``every_seconds`` seconds, whichever comes first, and one when training ends::

    [progress] step 120/1000 (12.0%) | epoch 1/1 | loss 2.3456 | 42.7 samples/s | elapsed 4m12s | ETA 30m48s

- ``loss``: the mean training loss over the batches since the previous line (``outputs["loss"]`` of
  ``training_step``), less noisy than one batch's value;
- ``samples/s``: samples of those batches (the first dimension of the batch's first tensor, times the
  number of processes) over the wall time since the previous line;
- ``elapsed``: wall time since training started (or resumed), validation included;
- ``ETA``: :func:`remaining_seconds`, the steps left at the mean rate since training started:
  ``(total - step) * elapsed / (step - first_step)``, so time spent in validation is spread over the
  steps and the estimate includes the validations still to come. ``total`` is the trainer's
  ``estimated_stepping_batches``; without a finite total the line has no percentage and no ETA.

``mode``: ``"auto"`` (the default) prints when stdout is not a terminal or the trainer has no progress
bar, and then turns the bar off (it would only smear the log); on a terminal the bar shows and this
callback stays silent. ``"always"`` prints and leaves the bar as configured; ``"never"`` does nothing.
The shipped phase-1 and phase-2 configs list this callback under ``trainer.callbacks``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

import pytorch_lightning as pl
from torch import Tensor

from scpt.training.files import format_duration

PREFIX = "[progress]"
ProgressMode = Literal["auto", "always", "never"]


def remaining_seconds(done: int, total: float | None, elapsed: float) -> float | None:
    """Seconds left for ``total - done`` more steps at the mean rate so far, ``elapsed / done`` per step.

    ``None`` when it cannot be estimated: no step done yet, no elapsed time, or no finite total.
    E.g. ``remaining_seconds(30, 120, 60.0) == 180.0`` (2 s a step, 90 steps left).
    """
    if total is None or not math.isfinite(total) or done <= 0 or elapsed <= 0:
        return None
    return max(0.0, (total - done) * elapsed / done)


def progress_line(
    step: int,
    total: float | None,
    epoch: int,
    max_epochs: int | None,
    loss: float | None,
    samples_per_second: float | None,
    elapsed: float,
    remaining: float | None,
) -> str:
    """One progress line (module docstring); parts that are unknown (``None``) are left out. ``epoch`` is
    0-based (``trainer.current_epoch``) and shown 1-based, at most ``max_epochs``."""
    finite = total is not None and math.isfinite(total) and total > 0
    parts = [f"{PREFIX} step {step}/{int(total)} ({100.0 * step / total:.1f}%)" if finite else f"{PREFIX} step {step}"]
    if max_epochs and max_epochs > 0:  # at the end of the last epoch Lightning has already counted the next one
        parts.append(f"epoch {min(epoch + 1, max_epochs)}/{max_epochs}")
    else:
        parts.append(f"epoch {epoch + 1}")
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    if samples_per_second is not None:
        parts.append(f"{samples_per_second:.1f} samples/s")
    parts.append(f"elapsed {format_duration(elapsed)}")
    if remaining is not None:
        parts.append(f"ETA {format_duration(remaining)}")
    return " | ".join(parts)


def _batch_size(batch: Any) -> int:
    """The first dimension of the first tensor in ``batch`` (a tensor, a mapping or a sequence); 0 if none."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() > 0 else 0
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for value in values:
        size = _batch_size(value)
        if size:
            return size
    return 0


def _loss_value(outputs: Any) -> float | None:
    """``outputs["loss"]`` (or ``outputs`` itself) of ``training_step`` as a float; ``None`` if absent."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if isinstance(loss, Tensor) and loss.numel() == 1:
        return float(loss.detach())
    return float(loss) if isinstance(loss, (int, float)) else None


class ProgressLog(pl.Callback):
    """Periodic progress lines during ``fit`` (module docstring).

    Args:
        every_n_steps: print after every this many optimiser steps (0: only by time).
        every_seconds: print when this many seconds have passed since the previous line (0: only by steps).
        mode: ``"auto"`` (print when stdout is not a terminal or there is no progress bar, and then turn the
            bar off), ``"always"`` or ``"never"``.
        clock: seconds of a monotonic clock (tests pass a fake one).
        write: where a line goes (default: ``print`` to stdout, flushed).
        stream: the stream whose ``isatty()`` decides ``"auto"`` (default: ``sys.stdout``).
    """

    def __init__(
        self,
        every_n_steps: int = 0,
        every_seconds: float = 60.0,
        mode: ProgressMode = "auto",
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] | None = None,
        stream: TextIO | None = None,
    ) -> None:
        if every_n_steps < 0 or every_seconds < 0 or (every_n_steps == 0 and every_seconds == 0):
            raise ValueError(
                f"ProgressLog needs every_n_steps > 0 or every_seconds > 0, got {every_n_steps} and {every_seconds}"
            )
        if mode not in ("auto", "always", "never"):
            raise ValueError(f"ProgressLog mode must be 'auto', 'always' or 'never', got {mode!r}")
        self.every_n_steps, self.every_seconds, self.mode = every_n_steps, every_seconds, mode
        self.clock = clock
        self.write = write if write is not None else (lambda line: print(line, flush=True))
        self.stream = stream
        self.active = False
        self._reset(0, 0.0)

    def _reset(self, step: int, now: float) -> None:
        self.first_step, self.started = step, now
        self.last_step, self.last_time = step, now
        self.losses: list[float] = []
        self.samples = 0
        self.batch_epoch: int | None = None  # the epoch of the last batch (train end may count the next one)

    def _is_terminal(self) -> bool:
        stream = self.stream if self.stream is not None else sys.stdout
        isatty = getattr(stream, "isatty", None)
        return bool(isatty()) if callable(isatty) else False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.mode == "never":
            self.active = False
            return
        bar = trainer.progress_bar_callback
        self.active = self.mode == "always" or not self._is_terminal() or bar is None
        if self.active and self.mode == "auto" and bar is not None:
            bar.disable()  # a redrawn bar in a file or pipe is noise; these lines replace it

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset(trainer.global_step, self.clock())

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.active:
            return
        loss = _loss_value(outputs)
        if loss is not None:
            self.losses.append(loss)
        self.samples += _batch_size(batch) * max(1, trainer.world_size)
        now, step = self.clock(), trainer.global_step
        self.batch_epoch = trainer.current_epoch
        due_by_steps = self.every_n_steps > 0 and step - self.last_step >= self.every_n_steps
        due_by_time = self.every_seconds > 0 and now - self.last_time >= self.every_seconds
        if (due_by_steps or due_by_time) and step > self.last_step:
            self._emit(trainer, now)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.active and trainer.global_step > self.last_step:
            self._emit(trainer, self.clock())

    def _emit(self, trainer: pl.Trainer, now: float) -> None:
        step = trainer.global_step
        window = now - self.last_time
        elapsed = now - self.started
        total = trainer.estimated_stepping_batches
        line = progress_line(
            step=step,
            total=total,
            epoch=trainer.current_epoch if self.batch_epoch is None else self.batch_epoch,
            max_epochs=trainer.max_epochs,
            loss=sum(self.losses) / len(self.losses) if self.losses else None,
            samples_per_second=self.samples / window if window > 0 and self.samples else None,
            elapsed=elapsed,
            remaining=remaining_seconds(step - self.first_step, total - self.first_step, elapsed),
        )
        if trainer.is_global_zero:
            self.write(line)
        self.last_step, self.last_time = step, now
        self.losses, self.samples = [], 0


__all__ = ["ProgressLog", "format_duration", "progress_line", "remaining_seconds"]
