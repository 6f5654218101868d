"""Row-wise log-sum-exp of anchor–contrast similarities: the only O(A·M) step of every scpt loss.

Every loss in :mod:`scpt.losses` splits into a part that is linear in the similarities (computed from
per-class embedding sums in O((A + M)·D)) and a row-wise log-sum-exp over a contrast set,

    lse_all(a) = log sum_{b in A(a)} exp(logits_ab),        logits = anchors @ contrast.T      [A, M]
    lse_pos(a) = log sum_{b in P(a)} exp(logits_ab)         (SupCon L_in only)

This module computes those two vectors. Small problems use plain autograd on the full [A, M] matrix
("dense"); large ones go through :class:`_ChunkedLogSumExp`, which walks anchor rows in chunks and
recomputes each chunk in backward, so memory is O(chunk · M) instead of several [A, M] matrices.
The two paths agree to float rounding (tests pin this).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: At or below this many logits (A·M) the dense path is used: one matrix is cheap and autograd saves
#: the recomputation. 2**22 fp32 logits = 16 MiB.
DENSE_MAX_LOGITS = 1 << 22
#: Logits per chunk in the chunked path (rows = this // M). 2**22 fp32 logits = 16 MiB per buffer;
#: the chunk loop holds about three such buffers at once.
CHUNK_LOGITS = 1 << 22

#: ``positive_block(start, stop)`` -> bool [stop - start, M]: which contrast columns are positives of
#: anchor rows ``start:stop`` (the anchor's own column may be True; it is removed by a ColumnOffset).
PositiveBlock = Callable[[int, int], Tensor]


@dataclass(frozen=True)
class ColumnOffset:
    """Adds ``value`` to one logit in each anchor row: ``logits[a, columns[a]] += value``.

    Rows whose column is negative are left alone. ``value = -inf`` removes the entry from the
    log-sum-exp (an anchor's own embedding in the contrast set); a finite value re-weights it in
    log space (SimCSE's hard-negative weight).

    Attributes:
        columns: ``[A]`` int64, a column of the contrast set for each anchor row, or -1.
        value: the offset; ``float("-inf")`` or a finite number.
    """

    columns: Tensor
    value: float


def _apply_offsets(logits: Tensor, offsets: Sequence[ColumnOffset], start: int, inplace: bool) -> Tensor:
    """Apply ``offsets`` to ``logits`` [c, M], whose first row is anchor ``start``.

    ``inplace=True`` only inside :class:`_ChunkedLogSumExp`, where no autograd graph is recorded; on
    the dense (autograd) path the gathered values must stay intact for backward.
    """
    for offset in offsets:
        columns = offset.columns[start : start + logits.shape[0]].unsqueeze(1)  # [c, 1]
        present = columns >= 0
        index = columns.clamp(min=0)
        current = logits.gather(1, index)
        shifted = current + offset.value if offset.value != float("-inf") else torch.full_like(current, offset.value)
        updated = torch.where(present, shifted, current)
        logits = logits.scatter_(1, index, updated) if inplace else logits.scatter(1, index, updated)
    return logits


def _dense_logsumexp(
    anchors: Tensor, contrast: Tensor, offsets: Sequence[ColumnOffset], positive_block: PositiveBlock | None
) -> tuple[Tensor, Tensor | None]:
    """Both log-sum-exps on the full [A, M] logit matrix, differentiated by autograd."""
    logits = _apply_offsets(anchors @ contrast.T, offsets, 0, inplace=False)  # [A, M]
    lse_all = torch.logsumexp(logits, dim=1)
    if positive_block is None:
        return lse_all, None
    positive = positive_block(0, anchors.shape[0])
    lse_pos = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    return lse_all, lse_pos


class _ChunkedLogSumExp(torch.autograd.Function):
    """Row log-sum-exps of ``anchors @ contrast.T`` in row chunks; backward recomputes each chunk.

    With ``lse`` the output and ``g`` its incoming gradient, d lse(a) / d logits_ab = softmax_ab, so
    d logits = softmax ⊙ g[:, None] (plus the same over positives for ``lse_pos``), and
    d anchors = d logits @ contrast, d contrast = d logits.T @ anchors.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        anchors: Tensor,
        contrast: Tensor,
        offsets: Sequence[ColumnOffset],
        positive_block: PositiveBlock | None,
        chunk_rows: int,
    ) -> tuple[Tensor, Tensor]:
        num_anchors = anchors.shape[0]
        lse_all = anchors.new_empty(num_anchors)
        lse_pos = anchors.new_empty(num_anchors if positive_block is not None else 0)
        contrast_t = contrast.T
        for start in range(0, num_anchors, chunk_rows):
            stop = min(start + chunk_rows, num_anchors)
            logits = _apply_offsets(anchors[start:stop] @ contrast_t, offsets, start, inplace=True)  # [c, M]
            lse_all[start:stop] = torch.logsumexp(logits, dim=1)
            if positive_block is not None:
                logits.masked_fill_(~positive_block(start, stop), float("-inf"))
                lse_pos[start:stop] = torch.logsumexp(logits, dim=1)
        ctx.save_for_backward(anchors, contrast, lse_all, lse_pos)
        ctx.offsets = offsets
        ctx.positive_block = positive_block
        ctx.chunk_rows = chunk_rows
        return lse_all, lse_pos

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_all: Tensor, grad_pos: Tensor):  # type: ignore[override]
        anchors, contrast, lse_all, lse_pos = ctx.saved_tensors
        positive_block: PositiveBlock | None = ctx.positive_block
        need_anchors, need_contrast = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_anchors = torch.empty_like(anchors) if need_anchors else None
        grad_contrast = torch.zeros_like(contrast) if need_contrast else None
        contrast_t = contrast.T
        for start in range(0, anchors.shape[0], ctx.chunk_rows):
            stop = min(start + ctx.chunk_rows, anchors.shape[0])
            anchor_chunk = anchors[start:stop]
            logits = _apply_offsets(anchor_chunk @ contrast_t, ctx.offsets, start, inplace=True)  # [c, M]
            if positive_block is not None:
                # softmax over P(a), times the incoming gradient of lse_pos
                grad_logits_pos = (logits - lse_pos[start:stop, None]).exp_()
                grad_logits_pos.masked_fill_(~positive_block(start, stop), 0.0)
                grad_logits_pos.mul_(grad_pos[start:stop, None])
            # softmax over A(a), in place in the logits buffer, times the incoming gradient of lse_all
            grad_logits = logits.sub_(lse_all[start:stop, None]).exp_().mul_(grad_all[start:stop, None])
            if positive_block is not None:
                grad_logits.add_(grad_logits_pos)
            if grad_anchors is not None:
                torch.mm(grad_logits, contrast, out=grad_anchors[start:stop])
            if grad_contrast is not None:
                grad_contrast.addmm_(grad_logits.T, anchor_chunk)
        return grad_anchors, grad_contrast, None, None, None


def similarity_logsumexp(
    anchors: Tensor,
    contrast: Tensor,
    offsets: Sequence[ColumnOffset] = (),
    positive_block: PositiveBlock | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Row-wise log-sum-exp of ``logits = anchors @ contrast.T``, over all columns and over positives.

    Args:
        anchors: ``[A, D]`` anchor embeddings, already divided by the temperature.
        contrast: ``[M, D]`` contrast-set embeddings.
        offsets: per-row logit offsets applied before the log-sum-exp (see :class:`ColumnOffset`).
        positive_block: if given, also return the log-sum-exp over each row's positive columns.
        chunk_size: anchor rows per chunk. ``None`` picks dense below :data:`DENSE_MAX_LOGITS` logits
            and chunks of :data:`CHUNK_LOGITS` logits above; an int forces the chunked path.

    Returns:
        ``(lse_all [A], lse_pos [A] or None)``. A row whose columns are all removed gives ``-inf``;
        callers only pass anchors that have at least one positive.
    """
    if chunk_size is None:
        if anchors.shape[0] * contrast.shape[0] <= DENSE_MAX_LOGITS:
            return _dense_logsumexp(anchors, contrast, offsets, positive_block)
        chunk_size = max(1, CHUNK_LOGITS // max(1, contrast.shape[0]))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of anchor rows, got {chunk_size}")
    lse_all, lse_pos = _ChunkedLogSumExp.apply(anchors, contrast, tuple(offsets), positive_block, chunk_size)
    return lse_all, (lse_pos if positive_block is not None else None)
