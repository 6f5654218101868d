"""Row-wise log-sum-exp of anchor–contrast similarities: the only O(A·M) step of every scpt loss.

Every loss in :mod:`scpt.losses` splits into a part that is linear in the similarities (computed from
per-class embedding sums in O((A + M)·D)) and a row-wise log-sum-exp over a contrast set,

    lse_all(a) = log sum_{b in A(a)} exp(logits_ab),        logits = anchors @ contrast.T      [A, M]
    lse_pos(a) = log sum_{b in P(a)} exp(logits_ab)         (SupCon L_in only)

This module computes those two vectors. Tiny problems use plain autograd on the full [A, M] matrix
("dense"); all others go through :class:`_ChunkedLogSumExp`, which walks anchor rows in chunks, so the
extra memory is O(chunk · M) instead of several [A, M] matrices (docs/design.md §2, "Memory").

Each chunk's softmax is formed once, in the forward pass, and multiplied straight into the two
gradient products (S @ contrast and S.T @ anchors, with S the softmax over A(a), minus the one over
P(a) when ``lse_pos`` is asked for); backward then only scales them by the incoming gradient. That is
exact for the anchors whenever lse_pos gets minus lse_all's gradient (SupCon L_in differentiates
lse_all - lse_pos; a row scale commutes with the product), and for the contrast set when, moreover,
every anchor gets the same gradient: the case for every scpt loss, a mean over anchors. Any other
gradient makes backward recompute the chunks. Per chunk that is one logits product, one row max, one
in-place ``exp(logits - max)``, one row sum and the two gradient products: the three matrix products
and a few passes over the chunk that any exact method needs (experiments/benchmarks/RESULTS.md, "floor").

The chunk size depends on the device (:func:`default_chunk_rows`): on the CPU, :data:`CHUNK_LOGITS`
logits per chunk; on CUDA, as many rows as a share of the free device memory allows
(:func:`chunk_rows_for`), so a large contrast set takes a few large kernels instead of thousands of
small ones. The dense and chunked paths agree to float rounding (tests pin this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: At or below this many logits (A·M) the dense path is used: one small matrix, plain autograd, none of
#: the chunk loop's index preparation and device syncs. 2**22 fp32 logits = 16 MiB.
DENSE_MAX_LOGITS = 1 << 22
#: CPU: logits per chunk (rows = this // M). 2**22 fp32 logits = 16 MiB per buffer.
CHUNK_LOGITS = 1 << 22
#: CUDA: the chunk buffers may take this share of the device's free memory ...
CUDA_FREE_FRACTION = 0.25
#: ... and at most this many bytes. Larger chunks buy nothing: at 4 GiB over three buffers, one pass
#: over a buffer takes ~0.3-0.6 ms on an H200 against a few microseconds of launch cost per kernel.
CUDA_CHUNK_MAX_BYTES = 4 << 30
#: [rows, M] buffers of the compute dtype the chunk loop holds at once, rounded up: the logits, and for
#: SupCon L_in the positive-masked copy and the boolean positive block.
CHUNK_BUFFERS = 3
#: CUDA chunk rows are rounded down to a multiple of this (matrix-product tiles).
CHUNK_ROW_MULTIPLE = 64

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


# --------------------------------------------------------------------------------------------------
# chunk size


def chunk_rows_for(num_contrast: int, dtype_bytes: int, free_bytes: int) -> int:
    """Anchor rows per chunk on a CUDA device with ``free_bytes`` of memory available.

    The :data:`CHUNK_BUFFERS` buffers of ``[rows, num_contrast]`` elements of ``dtype_bytes`` bytes
    get at most :data:`CUDA_FREE_FRACTION` of ``free_bytes`` and at most :data:`CUDA_CHUNK_MAX_BYTES`;
    rows are rounded down to a multiple of :data:`CHUNK_ROW_MULTIPLE` when there are that many.

    Returns:
        At least 1 (if even one row does not fit, the caller runs out of memory either way).
    """
    budget = min(int(free_bytes * CUDA_FREE_FRACTION), CUDA_CHUNK_MAX_BYTES)
    rows = budget // (CHUNK_BUFFERS * max(1, num_contrast) * dtype_bytes)
    if rows >= CHUNK_ROW_MULTIPLE:
        rows -= rows % CHUNK_ROW_MULTIPLE
    return max(1, rows)


def default_chunk_rows(num_anchors: int, num_contrast: int, dtype_bytes: int, free_bytes: int | None) -> int | None:
    """The automatic choice of :func:`similarity_logsumexp` for an ``[A, M]`` problem.

    Args:
        num_anchors: A.
        num_contrast: M.
        dtype_bytes: bytes per element of the compute dtype.
        free_bytes: free memory of the CUDA device, or ``None`` on the CPU (and other devices).

    Returns:
        ``None`` for the dense path (A·M <= :data:`DENSE_MAX_LOGITS`), else anchor rows per chunk:
        :data:`CHUNK_LOGITS` // M on the CPU, :func:`chunk_rows_for` on CUDA; never more than A.
    """
    if num_anchors * num_contrast <= DENSE_MAX_LOGITS:
        return None
    if free_bytes is None:
        rows = CHUNK_LOGITS // max(1, num_contrast)
    else:
        rows = chunk_rows_for(num_contrast, dtype_bytes, free_bytes)
    return max(1, min(rows, num_anchors))


def free_device_bytes(device: torch.device) -> int | None:
    """Bytes a new allocation on ``device`` can use: the driver's free memory plus what PyTorch's
    caching allocator holds unused. ``None`` for a device that is not CUDA."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


# --------------------------------------------------------------------------------------------------
# dense path (autograd on the full matrix)


def _apply_offsets(logits: Tensor, offsets: Sequence[ColumnOffset]) -> Tensor:
    """``logits`` [A, M] with ``offsets`` applied, out of place (the dense path's autograd graph keeps
    the gathered values for backward)."""
    for offset in offsets:
        columns = offset.columns.unsqueeze(1)  # [A, 1]
        present = columns >= 0
        index = columns.clamp(min=0)
        current = logits.gather(1, index)
        shifted = current + offset.value if offset.value != float("-inf") else torch.full_like(current, offset.value)
        logits = logits.scatter(1, index, torch.where(present, shifted, current))
    return logits


def _dense_logsumexp(
    anchors: Tensor, contrast: Tensor, offsets: Sequence[ColumnOffset], positive_block: PositiveBlock | None
) -> tuple[Tensor, Tensor | None]:
    """Both log-sum-exps on the full [A, M] logit matrix, differentiated by autograd."""
    logits = _apply_offsets(anchors @ contrast.T, offsets)  # [A, M]
    lse_all = torch.logsumexp(logits, dim=1)
    if positive_block is None:
        return lse_all, None
    positive = positive_block(0, anchors.shape[0])
    lse_pos = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    return lse_all, lse_pos


# --------------------------------------------------------------------------------------------------
# chunked path


class _OffsetPositions:
    """Where each :class:`ColumnOffset` touches the flat [A, M] logits, split by chunk.

    Prepared once per call (two device syncs), so a chunk applies an offset with one indexed write
    (``index_fill_`` for -inf, ``index_add_`` otherwise) instead of a gather, a select and a scatter.
    """

    def __init__(self, offsets: Sequence[ColumnOffset], num_contrast: int, chunk_starts: list[int], dtype: torch.dtype):
        self.num_contrast = num_contrast
        # per offset: (flat positions [R] ascending, first position of each chunk, added values [R] or None)
        self.entries: list[tuple[Tensor, list[int], Tensor | None]] = []
        for offset in offsets:
            rows = (offset.columns >= 0).nonzero().squeeze(1)  # [R], ascending
            flat = rows * num_contrast + offset.columns[rows]  # [R]
            bounds = torch.searchsorted(rows, torch.tensor(chunk_starts, device=rows.device)).tolist()
            value = float(offset.value)
            values = None if value == float("-inf") else torch.full(flat.shape, value, dtype=dtype, device=flat.device)
            self.entries.append((flat, bounds, values))

    def apply_(self, logits: Tensor, chunk: int, start: int) -> None:
        """Apply the offsets to ``logits`` [c, M] (contiguous), chunk number ``chunk`` starting at row ``start``."""
        flat_logits = logits.view(-1)
        for flat, bounds, values in self.entries:
            low, high = bounds[chunk], bounds[chunk + 1]
            if low == high:
                continue
            positions = flat[low:high] - start * self.num_contrast
            if values is None:
                flat_logits.index_fill_(0, positions, float("-inf"))
            else:
                flat_logits.index_add_(0, positions, values[low:high])


def _exp_rows_(logits: Tensor) -> tuple[Tensor, Tensor]:
    """In place: ``logits`` [c, M] becomes ``exp(logits - row max)``.

    Returns:
        ``(lse [c], inverse row sums [c])``: the rows' log-sum-exps and 1 / sum of the new values, so
        that ``logits * inverse[:, None]`` is the row softmax. A row of -inf only gives lse -inf and
        inverse 0 (no gradient), as :func:`torch.logsumexp` gives -inf.
    """
    if logits.shape[1] == 0:
        return logits.new_full((logits.shape[0],), float("-inf")), logits.new_zeros(logits.shape[0])
    row_max = logits.amax(dim=1)  # [c]; treated as a constant (the log-sum-exp does not depend on it)
    row_max = torch.where(torch.isinf(row_max), 0.0, row_max)
    sums = logits.sub_(row_max[:, None]).exp_().sum(dim=1)  # [c]
    inverse = torch.where(sums > 0, sums.reciprocal(), 0.0)
    return sums.log().add_(row_max), inverse


class _Chunk(NamedTuple):
    """One chunk of anchor rows ``start:stop`` as :func:`_walk_chunks` leaves it.

    ``weights`` [c, M] are ``exp(logits - row max)`` over A(a) and ``inverse`` [c] the inverse row sums,
    so the softmax is ``weights * inverse[:, None]``; ``positive_weights``/``positive_inverse`` the
    same over P(a) (``None`` without a positive block).
    """

    start: int
    stop: int
    anchors: Tensor
    lse_all: Tensor
    weights: Tensor
    inverse: Tensor
    lse_pos: Tensor | None
    positive_weights: Tensor | None
    positive_inverse: Tensor | None


def _walk_chunks(
    anchors: Tensor,
    contrast: Tensor,
    positions: _OffsetPositions,
    positive_block: PositiveBlock | None,
    chunk_rows: int,
) -> Iterator[_Chunk]:
    """Yield each chunk's softmax weights, computed in two buffers allocated once.

    A chunk's tensors are overwritten by the next one: use them before advancing.
    """
    num_anchors, num_contrast = anchors.shape[0], contrast.shape[0]
    rows = min(chunk_rows, num_anchors)
    buffer = anchors.new_empty(rows, num_contrast)  # [chunk, M]
    positive_buffer = anchors.new_empty(rows, num_contrast) if positive_block is not None else None
    minus_inf = anchors.new_full((), float("-inf"))
    contrast_t = contrast.T
    for chunk, start in enumerate(range(0, num_anchors, chunk_rows)):
        stop = min(start + chunk_rows, num_anchors)
        anchor_chunk = anchors[start:stop]
        weights = torch.mm(anchor_chunk, contrast_t, out=buffer[: stop - start])  # [c, M] logits
        positions.apply_(weights, chunk, start)
        positive_weights = lse_pos = positive_inverse = None
        if positive_buffer is not None:
            positive = positive_block(start, stop)  # [c, M] bool
            positive_weights = torch.where(positive, weights, minus_inf, out=positive_buffer[: stop - start])
            lse_pos, positive_inverse = _exp_rows_(positive_weights)
        lse_all, inverse = _exp_rows_(weights)
        yield _Chunk(start, stop, anchor_chunk, lse_all, weights, inverse, lse_pos, positive_weights, positive_inverse)


def _add_products(
    weights: Tensor,
    row_scale: Tensor | None,
    chunk: _Chunk,
    contrast: Tensor,
    grad_anchors: Tensor | None,
    grad_contrast: Tensor | None,
) -> None:
    """With ``G = weights * row_scale[:, None]`` [c, M] (d lse / d logits times a gradient):
    ``grad_anchors[start:stop] = G @ contrast`` and ``grad_contrast += G.T @ anchors[start:stop]``,
    the row scale applied to the [c, D] operands rather than to the [c, M] weights."""
    if grad_anchors is not None:
        rows = torch.mm(weights, contrast, out=grad_anchors[chunk.start : chunk.stop])
        if row_scale is not None:
            rows.mul_(row_scale[:, None])
    if grad_contrast is not None:
        grad_contrast.addmm_(weights.T, chunk.anchors if row_scale is None else chunk.anchors * row_scale[:, None])


def _is_uniform(grad: Tensor) -> bool:
    """Whether every entry of ``grad`` [A] is the same (one device sync)."""
    return grad.numel() == 0 or bool((grad == grad[0]).all())


class _ChunkedLogSumExp(torch.autograd.Function):
    """Row log-sum-exps of ``anchors @ contrast.T`` in row chunks; the gradient products are formed
    in forward.

    With ``lse`` the output and ``g`` its incoming gradient, d lse(a) / d logits_ab = softmax_ab, so
    d logits = G = softmax ⊙ g[:, None] (plus the same over positives for ``lse_pos``), and
    d anchors = G @ contrast, d contrast = G.T @ anchors. Forward forms the two products for
    d lse_all - d lse_pos (d lse_all alone without positives): ``S @ contrast`` [A, D] and
    ``S.T @ anchors`` [M, D] with S = softmax_all - softmax_pos. Backward scales them by g_all:
    exact for the anchors whenever g_pos = -g_all (SupCon L_in differentiates lse_all - lse_pos), and
    for the contrast set when g_all is moreover the same for every anchor (a mean over anchors). Any
    other gradient makes backward recompute the chunks.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        anchors: Tensor,
        contrast: Tensor,
        offsets: Sequence[ColumnOffset],
        positive_block: PositiveBlock | None,
        chunk_rows: int,
        needs_grad: tuple[bool, bool],
    ) -> tuple[Tensor, Tensor]:
        num_anchors, num_contrast = anchors.shape[0], contrast.shape[0]
        with_positives = positive_block is not None
        chunk_starts = [*range(0, num_anchors, chunk_rows), num_anchors]
        positions = _OffsetPositions(offsets, num_contrast, chunk_starts, anchors.dtype)
        lse_all = anchors.new_empty(num_anchors)
        lse_pos = anchors.new_empty(num_anchors if with_positives else 0)
        anchor_product = anchors.new_empty(anchors.shape) if needs_grad[0] else None  # S @ C [A, D]
        contrast_product = torch.zeros_like(contrast) if needs_grad[1] else None  # S.T @ A [M, D]
        for chunk in _walk_chunks(anchors, contrast, positions, positive_block, chunk_rows):
            lse_all[chunk.start : chunk.stop] = chunk.lse_all
            if with_positives:
                lse_pos[chunk.start : chunk.stop] = chunk.lse_pos
            if anchor_product is None and contrast_product is None:
                continue
            if with_positives:  # weights <- weights - positive_weights * (inverse_pos / inverse): S / inverse
                ratio = torch.where(chunk.inverse > 0, chunk.positive_inverse / chunk.inverse, 0.0)
                chunk.weights.addcmul_(chunk.positive_weights, ratio[:, None], value=-1.0)
            _add_products(chunk.weights, chunk.inverse, chunk, contrast, anchor_product, contrast_product)
        ctx.save_for_backward(anchors, contrast, anchor_product, contrast_product)
        ctx.positions = positions
        ctx.positive_block = positive_block
        ctx.chunk_rows = chunk_rows
        return lse_all, lse_pos

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_all: Tensor, grad_pos: Tensor):  # type: ignore[override]
        anchors, contrast, anchor_product, contrast_product = ctx.saved_tensors
        need_anchors, need_contrast = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if anchors.shape[0] == 0:
            return None, torch.zeros_like(contrast) if need_contrast else None, None, None, None, None
        paired = ctx.positive_block is None or torch.equal(grad_pos, -grad_all)  # the products' g_pos = -g_all
        grad_anchors = anchor_product * grad_all[:, None] if need_anchors and paired else None
        grad_contrast = contrast_product * grad_all[0] if need_contrast and paired and _is_uniform(grad_all) else None
        recompute_anchors = need_anchors and grad_anchors is None
        recompute_contrast = need_contrast and grad_contrast is None
        if recompute_anchors or recompute_contrast:  # a gradient the products do not cover
            grad_anchors = torch.empty_like(anchors) if recompute_anchors else grad_anchors
            missing_contrast = torch.zeros_like(contrast) if recompute_contrast else None
            for chunk in _walk_chunks(anchors, contrast, ctx.positions, ctx.positive_block, ctx.chunk_rows):
                rows = slice(chunk.start, chunk.stop)
                chunk.weights.mul_((chunk.inverse * grad_all[rows])[:, None])  # G over A(a)
                if chunk.positive_weights is not None:  # plus G over P(a)
                    chunk.weights.addcmul_(chunk.positive_weights, (chunk.positive_inverse * grad_pos[rows])[:, None])
                _add_products(
                    chunk.weights, None, chunk, contrast, grad_anchors if recompute_anchors else None, missing_contrast
                )
            grad_contrast = missing_contrast if recompute_contrast else grad_contrast
        return grad_anchors, grad_contrast, None, None, None, None


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
        chunk_size: anchor rows per chunk. ``None`` chooses by size and device
            (:func:`default_chunk_rows`: dense at or below :data:`DENSE_MAX_LOGITS` logits, else
            chunks of :data:`CHUNK_LOGITS` logits on the CPU or sized from free memory on CUDA); an
            int forces the chunked path.

    Returns:
        ``(lse_all [A], lse_pos [A] or None)``. A row whose columns are all removed gives ``-inf``;
        callers only pass anchors that have at least one positive.
    """
    if chunk_size is None:
        chunk_size = default_chunk_rows(
            anchors.shape[0], contrast.shape[0], contrast.element_size(), free_device_bytes(contrast.device)
        )
        if chunk_size is None:
            return _dense_logsumexp(anchors, contrast, offsets, positive_block)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of anchor rows, got {chunk_size}")
    grad_enabled = torch.is_grad_enabled()
    needs_grad = (grad_enabled and anchors.requires_grad, grad_enabled and contrast.requires_grad)
    lse_all, lse_pos = _ChunkedLogSumExp.apply(
        anchors, contrast, tuple(offsets), positive_block, chunk_size, needs_grad
    )
    return lse_all, (lse_pos if positive_block is not None else None)
