"""Optimiser pieces shared by both phases: the settings' checks, AdamW parameter groups and a linear
warmup/decay schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn


def check_optimizer_settings(
    *, warmup_ratio: float, learning_rate: float | None = None, weight_decay: float | None = None
) -> None:
    """Refuse optimiser settings that AdamW or the schedule would reject late (at fit time) or silently misuse.

    ``learning_rate`` must be a finite number > 0, ``weight_decay`` a finite number >= 0 (each checked when
    given), ``warmup_ratio`` a share of the training steps in ``[0, 1)``.

    Raises:
        ValueError: the first setting out of range, named with its value (``learning_rate must be a finite
            number > 0, got -0.1``).
    """
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate}")
    if weight_decay is not None and not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")


def no_decay_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices; none on biases and normalisation weights (1-d tensors).

    Parameters with ``requires_grad=False`` are left out of both groups.
    """
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_warmup_decay(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """``LambdaLR`` multiplier: 0 -> 1 linearly over ``warmup_steps``, then 1 -> 0 linearly at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


__all__ = ["check_optimizer_settings", "linear_warmup_decay", "no_decay_parameter_groups"]
