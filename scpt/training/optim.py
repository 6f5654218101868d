"""Optimiser pieces shared by both phases: AdamW parameter groups and a linear warmup/decay schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn


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


__all__ = ["linear_warmup_decay", "no_decay_parameter_groups"]
