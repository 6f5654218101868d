"""A run's final metrics for the sweep that launched it (``scpt sweep``, or a ``wandb agent``).

``scpt sweep`` runs every trial as a subprocess with ``$SCPT_TRIAL_RESULT`` set to
``<trial dir>/result.json``; whatever scpt runs there (``scpt pretrain fit``, ``scpt finetune fit``,
``scpt pipeline``) calls :func:`write_trial_result` at its end with its final metrics, and the runner
reads the sweep's metric from that file. Without the variable nothing is written.

Under a ``wandb agent`` (``$WANDB_SWEEP_ID`` set) the same metrics also go to the agent's W&B run, as its
summary: a sweep's metric is read from there, also when the run's own logger is not W&B's.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scpt.training.files import write_atomically

#: The environment variable naming the file the trial's metrics go to.
RESULT_ENV = "SCPT_TRIAL_RESULT"


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``metrics`` (floats, ints, one-element tensors) as ``{name: float}``; other values are left out.

    ``{"val/acc": tensor(0.5), "epoch": 3, "note": "x"}`` -> ``{"val/acc": 0.5, "epoch": 3.0}``.
    """
    scalars: dict[str, float] = {}
    for key, value in metrics.items():
        if hasattr(value, "numel") and hasattr(value, "item"):  # a tensor (torch not imported here)
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            scalars[str(key)] = float(value)
    return scalars


def write_trial_result(metrics: Mapping[str, float]) -> None:
    """Write ``metrics`` as JSON to ``$SCPT_TRIAL_RESULT`` (no-op when unset); under a W&B sweep agent also
    put them in the W&B run's summary. NaN and infinities are written as ``null`` (JSON has no NaN), which
    the runner counts as a missing metric."""
    metrics = scalar_metrics(metrics)
    target = os.environ.get(RESULT_ENV)
    if target:
        finite = {key: (value if math.isfinite(value) else None) for key, value in metrics.items()}
        write_atomically(Path(target), json.dumps(finite, indent=2, sort_keys=True) + "\n", overwrite=True)
    if os.environ.get("WANDB_SWEEP_ID"):
        _log_to_wandb_sweep(metrics)


def _log_to_wandb_sweep(metrics: dict[str, float]) -> None:
    try:
        import wandb
    except ImportError:
        return
    run = wandb.run
    own_run = run is None
    if own_run:  # the agent's run id and sweep come from the environment it set
        run = wandb.init()
    run.summary.update(metrics)
    if own_run:
        run.finish()


def read_trial_result(path: str | Path) -> dict[str, float | None]:
    """The metrics a run wrote with :func:`write_trial_result` (``None`` for a non-finite value).

    Raises:
        FileNotFoundError: no result file (the run ended before writing it).
        ValueError: the file is not a JSON object.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of metrics")
    return {str(key): (None if value is None else float(value)) for key, value in data.items()}


__all__ = ["RESULT_ENV", "read_trial_result", "scalar_metrics", "write_trial_result"]
