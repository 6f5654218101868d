"""The chunked log-sum-exp (scpt/losses/logsumexp.py): its chunk-size rule and its exactness.

- the CUDA chunk rule :func:`chunk_rows_for` and the automatic choice :func:`default_chunk_rows`, with
  known numbers (they are pure functions, so the GPU's rule is tested here on the CPU);
- :func:`similarity_logsumexp` chunked against dense autograd in float64: both offsets kinds at once
  (-inf and a finite weight, with rows that have no offset), the positive block, ragged chunks, and
  every kind of incoming gradient: the one the products formed in forward cover (the same for every
  anchor, g_pos = -g_all), the one they cover for the anchors only (g_pos = -g_all per anchor), and
  the others (backward recomputes the chunks);
- the CUDA rule's path on CPU tensors (free memory faked), no gradient work under ``no_grad``, an
  empty positive set, no anchors, deterministic mode.
"""

from __future__ import annotations

import pytest
import torch

from scpt.losses import SupConLoss, logsumexp
from scpt.losses.logsumexp import (
    CHUNK_LOGITS,
    CUDA_CHUNK_MAX_BYTES,
    DENSE_MAX_LOGITS,
    ColumnOffset,
    chunk_rows_for,
    default_chunk_rows,
    similarity_logsumexp,
)

GIB = 1 << 30


# --------------------------------------------------------------------------------------------------
# the chunk-size rules


@pytest.mark.parametrize(
    ("num_contrast", "dtype_bytes", "free_bytes", "rows"),
    [
        # an idle H200 (~130 GiB free): the 4 GiB cap binds; 4 GiB / (3 buffers * M * 4 B), rounded down to 64
        (65_536, 4, 130 * GIB, 5_440),  # 5461.3 -> 5440
        (131_072, 4, 130 * GIB, 2_688),  # 2730.7 -> 2688
        (32_768, 4, 130 * GIB, 10_880),  # 10922.7 -> 10880
        (131_072, 8, 130 * GIB, 1_344),  # float64: half the rows
        # 1 GiB free: a quarter of it, 256 MiB / (3 * 65536 * 4) = 341.3 -> 320
        (65_536, 4, GIB, 320),
        # below one multiple of 64 the rows are not rounded: 16 MiB / 4 / (3 * 65536 * 4) = 5.3 -> 5
        (65_536, 4, 16 << 20, 5),
        # not even one row fits: 1, and the caller runs out of memory as it would anyway
        (65_536, 4, 1 << 20, 1),
    ],
)
def test_chunk_rows_for_known_values(num_contrast, dtype_bytes, free_bytes, rows):
    assert chunk_rows_for(num_contrast, dtype_bytes, free_bytes) == rows


def test_chunk_rows_for_stays_within_budget():
    for num_contrast in (1_000, 8_192, 65_536, 1_000_003):
        for free in (GIB // 8, 3 * GIB, 80 * GIB, 141 * GIB):
            rows = chunk_rows_for(num_contrast, 4, free)
            held = 3 * rows * num_contrast * 4
            assert rows == 1 or held <= min(free // 4, CUDA_CHUNK_MAX_BYTES)


def test_default_chunk_rows():
    # at or below DENSE_MAX_LOGITS logits: dense (None), on any device
    assert default_chunk_rows(2_048, 2_048, 4, None) is None
    assert default_chunk_rows(2_048, 2_048, 4, 100 * GIB) is None
    assert DENSE_MAX_LOGITS == 2_048 * 2_048
    # the CPU keeps CHUNK_LOGITS logits per chunk (64 rows at M = 65536, as before)
    assert default_chunk_rows(65_536, 65_536, 4, None) == CHUNK_LOGITS // 65_536 == 64
    # CUDA: sized from free memory, never more rows than anchors
    assert default_chunk_rows(65_536, 65_536, 4, 130 * GIB) == 5_440
    assert default_chunk_rows(8_192, 8_192, 4, 130 * GIB) == 8_192  # one chunk
    assert default_chunk_rows(3, 2_000_000, 4, 130 * GIB) == 3


# --------------------------------------------------------------------------------------------------
# chunked vs dense, float64


def _problem(num_anchors: int = 23, num_contrast: int = 31, dim: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randn(num_anchors, dim, generator=g, dtype=torch.float64)
    contrast = torch.randn(num_contrast, dim, generator=g, dtype=torch.float64)
    own = torch.randint(0, num_contrast, (num_anchors,), generator=g)
    own[::5] = -1  # anchors outside the contrast set: no column removed
    own[0] = 1
    weighted = torch.randint(0, num_contrast, (num_anchors,), generator=g)
    weighted[1::4] = -1
    weighted = torch.where(weighted == own, -1, weighted)  # at most one offset per logit
    offsets = [ColumnOffset(own, float("-inf")), ColumnOffset(weighted, -0.7)]
    # every anchor keeps a positive column after its own is removed: each of 4 classes has >= 6 columns
    anchor_labels = torch.randint(0, 4, (num_anchors,), generator=g)
    contrast_labels = torch.arange(num_contrast)[torch.randperm(num_contrast, generator=g)] % 4
    contrast_labels[0] = anchor_labels[0] = 9  # anchor 0 has exactly one positive, column 0

    def block(start: int, stop: int) -> torch.Tensor:
        return anchor_labels[start:stop, None] == contrast_labels[None, :]

    return anchors, contrast, offsets, block


def _values_and_grads(anchors, contrast, offsets, block, chunk_size, grad_all, grad_pos):
    a, c = anchors.clone().requires_grad_(), contrast.clone().requires_grad_()
    lse_all, lse_pos = similarity_logsumexp(a, c, offsets, positive_block=block, chunk_size=chunk_size)
    total = (lse_all * grad_all).sum() + (0.0 if lse_pos is None else (lse_pos * grad_pos).sum())
    total.backward()
    return lse_all.detach(), None if lse_pos is None else lse_pos.detach(), a.grad, c.grad


def _incoming(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of (lse_all, lse_pos): the products formed in forward cover "mean" (the same for every
    anchor, g_pos = -g_all, as a mean of SupCon L_in gives) fully and "paired" (g_pos = -g_all per
    anchor) for the anchors; the rest is recomputed in backward."""
    g = torch.Generator().manual_seed(1)
    varying = torch.randn(23, generator=g, dtype=torch.float64)
    same = torch.full((23,), 0.37, dtype=torch.float64)
    return {
        "mean": (same, -same),
        "paired": (varying, -varying),
        "same-unpaired": (same, 0.5 * same),
        "per-anchor": (varying, torch.randn(23, generator=g, dtype=torch.float64)),
    }[kind]


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 23, 100])
@pytest.mark.parametrize("kind", ["mean", "paired", "same-unpaired", "per-anchor"])
@pytest.mark.parametrize("with_positives", [False, True], ids=["lse_all", "lse_all+lse_pos"])
def test_chunked_matches_dense_float64(chunk_size, kind, with_positives):
    anchors, contrast, offsets, block = _problem()
    grad_all, grad_pos = _incoming(kind)
    block = block if with_positives else None
    dense = _values_and_grads(anchors, contrast, offsets, block, None, grad_all, grad_pos)
    chunked = _values_and_grads(anchors, contrast, offsets, block, chunk_size, grad_all, grad_pos)
    for got, expected in zip(chunked, dense):
        if expected is None:
            assert got is None
        else:
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_offsets_match_their_definition():
    anchors, contrast, offsets, _ = _problem()
    logits = anchors @ contrast.T
    for row in range(logits.shape[0]):
        for offset in offsets:
            column = int(offset.columns[row])
            if column >= 0:
                logits[row, column] += offset.value
    lse_all, _ = similarity_logsumexp(anchors, contrast, offsets, chunk_size=5)
    torch.testing.assert_close(lse_all, torch.logsumexp(logits, dim=1), rtol=1e-13, atol=0)


def test_cuda_rule_on_cpu_tensors(monkeypatch):
    """The automatic CUDA choice, run on CPU tensors with a faked free memory: several ragged chunks of
    a multiple of 64 rows, the same values and gradients as the CPU rule."""
    g = torch.Generator().manual_seed(2)
    features = torch.randn(1_100, 2, 8, generator=g)  # A = M = 2200 > 2048: chunked
    labels = torch.randint(0, 7, (1_100,), generator=g)
    chunk_rows = []
    apply = logsumexp._ChunkedLogSumExp.apply

    def recording_apply(*args):
        chunk_rows.append(args[4])
        return apply(*args)

    monkeypatch.setattr(logsumexp._ChunkedLogSumExp, "apply", recording_apply)
    results = {}
    for rule, free in (("cpu", None), ("cuda", 4 * 3 * 2_200 * 4 * 700)):  # budget: 700 rows -> 640
        monkeypatch.setattr(logsumexp, "free_device_bytes", lambda device, free=free: free)
        leaf = features.clone().requires_grad_()
        loss = SupConLoss(variant="in")(leaf, labels)
        loss.backward()
        results[rule] = (loss.detach(), leaf.grad)
    assert chunk_rows == [CHUNK_LOGITS // 2_200, 640]
    torch.testing.assert_close(results["cuda"][0], results["cpu"][0], rtol=1e-6, atol=0)
    torch.testing.assert_close(results["cuda"][1], results["cpu"][1], rtol=1e-5, atol=1e-8)


def test_no_gradient_work_without_grad(monkeypatch):
    """Under ``no_grad`` the forward pass forms no gradient products (evaluation pays for the values only)."""
    anchors, contrast, offsets, block = _problem()
    calls = []
    add_products = logsumexp._add_products
    monkeypatch.setattr(logsumexp, "_add_products", lambda *args: calls.append(args) or add_products(*args))
    leaf = anchors.clone().requires_grad_()
    with torch.no_grad():
        no_grad = similarity_logsumexp(leaf, contrast, offsets, positive_block=block, chunk_size=4)
    assert not any(c[4] is not None or c[5] is not None for c in calls)
    assert not no_grad[0].requires_grad
    with_grad = similarity_logsumexp(leaf, contrast, offsets, positive_block=block, chunk_size=4)
    assert any(c[4] is not None for c in calls) and not any(c[5] is not None for c in calls)  # contrast: no grad
    torch.testing.assert_close(no_grad[0], with_grad[0].detach(), rtol=0, atol=0)
    torch.testing.assert_close(no_grad[1], with_grad[1].detach(), rtol=0, atol=0)


def test_row_without_positives_gives_minus_inf_and_no_nan():
    """lse_pos of a row with no positive is -inf and its gradient is 0: nothing NaN reaches the shared
    contrast gradient (callers never pass such rows; this only keeps one from poisoning the others)."""
    anchors, contrast, offsets, _ = _problem()

    positive = torch.zeros(23, contrast.shape[0], dtype=torch.bool)
    positive[:, 10:] = True
    positive[3] = False

    def block(start: int, stop: int) -> torch.Tensor:
        return positive[start:stop]

    a, c = anchors.clone().requires_grad_(), contrast.clone().requires_grad_()
    lse_all, lse_pos = similarity_logsumexp(a, c, offsets, positive_block=block, chunk_size=4)
    assert lse_pos[3] == float("-inf") and bool(torch.isfinite(lse_pos[torch.arange(23) != 3]).all())
    (lse_all - torch.where(torch.isinf(lse_pos), 0.0, lse_pos)).mean().backward()
    assert bool(torch.isfinite(a.grad).all()) and bool(torch.isfinite(c.grad).all())


def test_no_anchors():
    contrast = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    anchors = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    lse_all, lse_pos = similarity_logsumexp(
        anchors, contrast, positive_block=lambda s, e: torch.ones(e - s, 5, dtype=torch.bool), chunk_size=2
    )
    assert lse_all.shape == lse_pos.shape == (0,)
    (lse_all.sum() + lse_pos.sum()).backward()
    assert torch.equal(contrast.grad, torch.zeros(5, 3, dtype=torch.float64))


def test_deterministic_mode():
    anchors, contrast, offsets, block = _problem()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first = _values_and_grads(anchors, contrast, offsets, block, 4, 0.5, -0.5)
        second = _values_and_grads(anchors, contrast, offsets, block, 4, 0.5, -0.5)
    finally:
        torch.use_deterministic_algorithms(previous)
    for x, y in zip(first, second):
        assert torch.equal(x, y)
