"""Exact reductions across processes for contrastive training (docs/design.md §3, "Across processes").

Under DDP every process holds a local batch of B samples; DDP *averages* parameter gradients over the
W processes after backward. For one optimiser step to equal single-process training on the
concatenated batch of W·B samples, each process's loss must be written so that the average of the
per-process gradients is the gradient of the global loss:

- **Contrastive terms.** Features are gathered *with* gradients (:func:`gather_with_grad`): the
  backward all-reduces (sums) the gradient of the gathered tensor over processes, so process r
  receives d(sum_s L_s)/d z_r, the gradient that every process's loss sends to its own features.
  Process r's anchors are its local samples, contrasted with the global set; with
  ``S_r`` the sum of its valid anchors' losses and ``K`` the number of valid anchors over all
  processes, process r's loss is ``W · S_r / K``. The DDP average is then
  ``(1/W) · sum_r d(W · S_r / K) = d(sum_r S_r / K)``: the global mean.
- **Token-level terms** (masked aspect prediction, reconstruction): the same with token sums and the
  global token count (:func:`global_mean`), so processes with more masked tokens weigh more, as in
  the concatenated batch.

On one process (or without an initialised process group) every function here is the identity or a
plain mean. All collectives are ``all_gather``/``all_reduce``, which every backend (NCCL, gloo)
supports.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from scpt.losses import ContrastiveLoss


def world_size() -> int:
    """W, the number of processes in the default group (1 without an initialised group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's index in the default group (0 without an initialised group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _check_equal_rows(tensor: Tensor, what: str) -> None:
    """All processes must gather the same number of rows (all_gather needs equal shapes)."""
    rows = torch.tensor([tensor.shape[0]], device=tensor.device)
    every = [torch.empty_like(rows) for _ in range(world_size())]
    dist.all_gather(every, rows)
    counts = [int(c) for c in every]
    if len(set(counts)) != 1:
        raise ValueError(
            f"{what}: every process must hold a batch of the same size to gather it, got {counts} rows per "
            "process (use scpt's distributed batch samplers, which give equal batches on every rank)"
        )


def gather(tensor: Tensor) -> Tensor:
    """``tensor`` ``[B, ...]`` from every process, concatenated in rank order: ``[W·B, ...]``, no gradient."""
    if world_size() == 1:
        return tensor
    _check_equal_rows(tensor, "gather")
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gathered tensor's gradient over processes and returns this
    process's rows: d(sum_s L_s) / d x_r."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad_gathered: Tensor) -> Tensor:  # type: ignore[override]
        summed = grad_gathered.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        start = rank() * ctx.rows
        return summed[start : start + ctx.rows]


def gather_with_grad(tensor: Tensor) -> Tensor:
    """``tensor`` ``[B, ...]`` from every process, concatenated in rank order ``[W·B, ...]``, on the
    autograd graph: rows of other processes carry their gradient back to them.

    A gather that keeps only the local rows on the graph (e.g. Lightning's ``all_gather`` without
    ``sync_grads``) drops the other processes' anchors' gradient on this process's features; the
    averaged gradient is then 1/W of the right one for the cross terms.
    """
    if world_size() == 1:
        return tensor
    _check_equal_rows(tensor, "gather_with_grad")
    return _GatherWithGrad.apply(tensor)


def all_reduce_sum(value: Tensor | int | float, device: torch.device | None = None) -> Tensor:
    """The sum over processes of a (detached) scalar or tensor, on ``device`` (NCCL reduces only CUDA
    tensors; default: the value's own device); a tensor copy of it on one process."""
    summed = torch.as_tensor(value, device=device).detach().clone()
    if world_size() > 1:
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed


def global_mean(local_sum: Tensor, local_count: Tensor | int) -> Tensor:
    """This process's share of a mean over every process's items: ``W · local_sum / global_count``.

    After DDP averages the gradients over the W processes, the result is the gradient of
    ``sum_r local_sum_r / sum_r local_count_r``. On one process: ``local_sum / local_count``. With no
    item anywhere the result is ``local_sum · 0`` (on the graph, gradient 0).
    """
    count = all_reduce_sum(local_count, device=local_sum.device).to(local_sum.dtype)
    if not count > 0:
        return local_sum * 0.0
    return local_sum * (world_size() / count)


def distributed_contrastive_loss(
    loss: ContrastiveLoss,
    features: Tensor,
    labels: Tensor | None = None,
    *,
    memory: Tensor | None = None,
    memory_labels: Tensor | None = None,
    **sample_extras: Tensor | None,
) -> Tensor:
    """This process's share of a contrastive loss over the batches of every process (module docstring).

    ``features`` ``[B, V, D]``, ``labels`` ``[B]`` and every tensor in ``sample_extras`` with one row per
    sample (SimCSE's ``hard_negatives`` ``[B, D]``) are gathered in rank order with gradients; ``memory``
    is the same on every process (a queue filled with gathered keys) and is passed as is. A loss that
    accepts ``anchor_samples`` computes this process's anchors only and returns ``W · S_r / K``; any
    other loss is computed on all anchors on every process (the same value everywhere, W-fold work),
    which the gather's summed backward and DDP's average also turn into the exact gradient.

    On one process this is ``loss(features, labels, memory=..., memory_labels=..., **sample_extras)``.
    """
    if world_size() == 1:
        return loss(features, labels, memory=memory, memory_labels=memory_labels, **sample_extras)
    local_samples = features.shape[0]
    all_features = gather_with_grad(features)
    all_labels = gather(labels) if labels is not None else None
    extras: dict[str, Any] = {
        name: gather_with_grad(value) if isinstance(value, Tensor) else value for name, value in sample_extras.items()
    }
    if not loss.accepts_anchor_samples:
        return loss(all_features, all_labels, memory=memory, memory_labels=memory_labels, **extras)
    start = rank() * local_samples
    local_mean = loss(
        all_features,
        all_labels,
        memory=memory,
        memory_labels=memory_labels,
        anchor_samples=slice(start, start + local_samples),
        **extras,
    )
    valid = loss.last_stats.num_valid_anchors if loss.last_stats is not None else local_samples
    return global_mean(local_mean * valid, valid)


__all__ = [
    "distributed_contrastive_loss",
    "all_reduce_sum",
    "gather",
    "gather_with_grad",
    "global_mean",
    "rank",
    "world_size",
]
