"""Summaries of repeated runs: mean ± sample standard deviation, and the Student t interval of a mean.

Fine-tuning seeds (``scpt finetune seeds``) and pre-training runs (``scpt pipeline`` with
``pretrain_seeds``) are summarised with these. The interval is the textbook one for independent values:

    mean ± t(1/2 + c/2, n − 1) · s / sqrt(n)                                                     (1)

with s the sample standard deviation (n − 1 in the denominator) and c the confidence (0.95).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy.stats import t as student_t


def mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """``{"mean", "std", "n"}`` of ``values``; ``std`` (sample, n − 1) is ``None`` for a single value."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The two-sided Student t interval (1) of the mean of independent ``values`` (at least two).

    Raises:
        ValueError: fewer than two values, or ``confidence`` outside (0, 1).
    """
    if len(values) < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {len(values)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    mean = statistics.fmean(values)
    half_width = float(student_t.ppf(0.5 + confidence / 2, df=len(values) - 1)) * statistics.stdev(values)
    half_width /= math.sqrt(len(values))
    return mean - half_width, mean + half_width
