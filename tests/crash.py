"""A crash for resume tests: a Lightning callback that kills its own process mid-training.

Run a command with ``tests/`` on ``PYTHONPATH`` and this in its callbacks (``class_path: crash.KillAtStep``).
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    """SIGKILL this process once training has done ``step`` optimiser steps: no clean-up, no last save,
    as after an out-of-memory kill or a lost node. Lightning runs the ``ModelCheckpoint`` callbacks after
    the others, so the step it kills at is not saved."""

    def __init__(self, step: int, only_if_env: str | None = None) -> None:
        self.step = step
        self.only_if_env = only_if_env  # armed only when this environment variable is set (else inert)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        armed = self.only_if_env is None or bool(os.environ.get(self.only_if_env))
        if armed and trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
