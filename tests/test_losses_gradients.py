"""Gradients of the contrastive losses.

- torch.autograd.gradcheck in float64 for every loss, on the dense path (plain autograd) and on the
  chunked custom autograd.Function with a tiny chunk size, with and without normalisation;
- the functional cores with anchors and contrast as separate leaves (memory queue, self_columns -1),
  so the chunked backward's anchor and contrast gradients are each checked;
- chunked vs dense agreement in float32 at a moderate size (N=300, V=2, D=16, chunk_size=37).
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from scpt.losses import (
    DSCLLoss,
    SameLabel,
    SampleMask,
    SimCSELoss,
    SupConLoss,
    dscl_anchor_losses,
    simcse_anchor_losses,
    supcon_anchor_losses,
)

CHUNKS = [None, 1, 2]


def _graph_names(t: torch.Tensor) -> set[str]:
    """Names of every backward node reachable from ``t``."""
    seen, stack, names = set(), [t.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(n for n, _ in node.next_functions)
    return names


def _uses_chunked_path(loss: torch.Tensor) -> bool:
    return any("ChunkedLogSumExp" in name for name in _graph_names(loss))


def _leaf(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).requires_grad_()


LABELS = torch.tensor([0, 1, 0, 1, 2])  # class 2 has one sample: with V=1 that anchor has no positive


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("num_views", [1, 2])
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_gradcheck(variant, num_views, normalize, chunk_size):
    features = _leaf(5, num_views, 3, seed=1, scale=1.0 if normalize else 0.5)
    loss_fn = SupConLoss(
        temperature=0.3, base_temperature=0.5, variant=variant, normalize=normalize, chunk_size=chunk_size
    )
    assert _uses_chunked_path(loss_fn(features, LABELS)) == (chunk_size is not None)
    assert gradcheck(lambda f: loss_fn(f, LABELS), (features,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_gradcheck_mask_and_unsupervised(variant, chunk_size):
    features = _leaf(4, 2, 3, seed=2)
    mask = torch.tensor([[0, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    loss_fn = SupConLoss(temperature=0.4, variant=variant, chunk_size=chunk_size)
    assert gradcheck(lambda f: loss_fn(f, mask=mask), (features,), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert gradcheck(lambda f: loss_fn(f), (features,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_dscl_gradcheck(alpha, normalize, chunk_size):
    features = _leaf(5, 2, 3, seed=3, scale=1.0 if normalize else 0.5)
    loss_fn = DSCLLoss(temperature=0.3, alpha=alpha, normalize=normalize, chunk_size=chunk_size)
    assert _uses_chunked_path(loss_fn(features, LABELS)) == (chunk_size is not None)
    assert gradcheck(lambda f: loss_fn(f, LABELS), (features,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(("hard", "weight"), [(False, 0.0), (True, 0.0), (True, 0.8)])
def test_simcse_gradcheck(hard, weight, normalize, chunk_size):
    scale = 1.0 if normalize else 0.5
    z1, z2 = _leaf(4, 3, seed=4, scale=scale), _leaf(4, 3, seed=5, scale=scale)
    inputs = (z1, z2, _leaf(4, 3, seed=6, scale=scale)) if hard else (z1, z2)
    loss_fn = SimCSELoss(temperature=0.3, hard_negative_weight=weight, normalize=normalize, chunk_size=chunk_size)

    def call(z1, z2, z3=None):
        return loss_fn(torch.stack([z1, z2], dim=1), hard_negatives=z3)

    assert _uses_chunked_path(call(*inputs)) == (chunk_size is not None)
    assert gradcheck(call, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# functional cores: anchors and contrast as separate leaves


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_core_gradcheck_anchors_and_contrast(variant, chunk_size):
    """Per-anchor losses (weighted sum) w.r.t. anchors and the contrast set (batch + queue) separately."""
    anchors = _leaf(5, 3, seed=7)
    contrast = _leaf(8, 3, seed=8)
    a_labels = torch.tensor([0, 1, 0, 2, 1])
    c_labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2])
    positives = SameLabel.from_labels(a_labels, c_labels)
    self_columns = torch.tensor([0, 1, 2, -1, 4])  # anchor 3 is not in the contrast set
    weights = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)

    def f(a, c):
        out = supcon_anchor_losses(a, c, positives, self_columns, 0.5, variant, chunk_size)
        return (out.losses * weights[out.valid]).sum()

    assert gradcheck(f, (anchors, contrast), eps=1e-6, atol=1e-7, rtol=1e-5)
    # only one side requiring grad (the chunked backward skips the other)
    assert gradcheck(lambda a: f(a, contrast.detach()), (anchors,), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert gradcheck(lambda c: f(anchors.detach(), c), (contrast,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_core_gradcheck_sample_mask(variant, chunk_size):
    anchors = _leaf(4, 3, seed=9)
    contrast = _leaf(6, 3, seed=10)
    mask = torch.tensor([[1, 0, 1, 1], [0, 1, 0, 1], [1, 1, 0, 0]], dtype=torch.bool)
    positives = SampleMask(mask, torch.tensor([0, 0, 1, 2]), torch.tensor([0, 0, 1, 2, 3, 3]))

    def f(a, c):
        return supcon_anchor_losses(a, c, positives, torch.tensor([0, 1, 2, 3]), 0.5, variant, chunk_size).losses.sum()

    assert gradcheck(f, (anchors, contrast), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_dscl_core_gradcheck_with_queue(chunk_size):
    anchors = _leaf(4, 3, seed=11)
    contrast = _leaf(7, 3, seed=12)
    labels = torch.tensor([0, 0, 1, 1])
    samples = torch.tensor([0, 0, 1, 1])
    same_class = SameLabel.from_labels(labels, torch.tensor([0, 0, 1, 1, 1, 0, 2]))
    same_sample = SameLabel.from_labels(samples, torch.tensor([0, 0, 1, 1, 2, 3, 4]))

    def f(a, c):
        return dscl_anchor_losses(a, c, same_class, same_sample, torch.arange(4), 0.5, 0.2, chunk_size).losses.sum()

    assert gradcheck(f, (anchors, contrast), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_simcse_core_gradcheck(chunk_size):
    z1, z2, z3 = _leaf(3, 4, seed=13), _leaf(3, 4, seed=14), _leaf(3, 4, seed=15)

    def f(a, b, c):
        return simcse_anchor_losses(a, b, c, 0.5, -0.7, chunk_size).losses.sum()

    assert gradcheck(f, (z1, z2, z3), eps=1e-6, atol=1e-7, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# chunked vs dense, float32, moderate size


def _assert_grads_close(chunked: torch.Tensor, dense: torch.Tensor, rel: float = 1e-5) -> None:
    scale = dense.abs().max()
    assert torch.linalg.vector_norm(chunked - dense) <= rel * torch.linalg.vector_norm(dense)
    torch.testing.assert_close(chunked, dense, rtol=rel, atol=rel * float(scale))


def _dense_and_chunked(make_loss, inputs: tuple[torch.Tensor, ...], call):
    results = []
    for chunk_size in (None, 37):
        leaves = tuple(x.detach().clone().requires_grad_() for x in inputs)
        loss = call(make_loss(chunk_size), *leaves)
        assert _uses_chunked_path(loss) == (chunk_size is not None)
        loss.backward()
        results.append((loss.detach(), [x.grad for x in leaves]))
    return results


def _float32_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(300, 2, 16, generator=g)
    labels = torch.randint(0, 12, (300,), generator=g)
    labels[:5] = 100 + torch.arange(5)  # five singleton classes: valid only through their other view
    return features, labels


@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_chunked_matches_dense_float32(variant):
    features, labels = _float32_batch(20)
    (dense, dense_grads), (chunked, chunked_grads) = _dense_and_chunked(
        lambda c: SupConLoss(temperature=0.1, variant=variant, chunk_size=c), (features,), lambda fn, f: fn(f, labels)
    )
    assert dense.dtype == torch.float32
    torch.testing.assert_close(chunked, dense, rtol=1e-5, atol=0)
    _assert_grads_close(chunked_grads[0], dense_grads[0])


def test_dscl_chunked_matches_dense_float32():
    features, labels = _float32_batch(21)
    (dense, dense_grads), (chunked, chunked_grads) = _dense_and_chunked(
        lambda c: DSCLLoss(temperature=0.1, alpha=0.2, chunk_size=c), (features,), lambda fn, f: fn(f, labels)
    )
    torch.testing.assert_close(chunked, dense, rtol=1e-5, atol=0)
    _assert_grads_close(chunked_grads[0], dense_grads[0])


def test_supcon_unsupervised_chunked_matches_dense_float32():
    features, _ = _float32_batch(22)
    (dense, dense_grads), (chunked, chunked_grads) = _dense_and_chunked(
        lambda c: SupConLoss(temperature=0.1, variant="in", chunk_size=c), (features,), lambda fn, f: fn(f)
    )
    torch.testing.assert_close(chunked, dense, rtol=1e-5, atol=0)
    _assert_grads_close(chunked_grads[0], dense_grads[0])


def test_simcse_chunked_matches_dense_float32():
    g = torch.Generator().manual_seed(23)
    z = tuple(torch.randn(300, 16, generator=g) for _ in range(3))
    (dense, dense_grads), (chunked, chunked_grads) = _dense_and_chunked(
        lambda c: SimCSELoss(temperature=0.05, hard_negative_weight=0.5, chunk_size=c),
        z,
        lambda fn, z1, z2, z3: fn(torch.stack([z1, z2], dim=1), hard_negatives=z3),
    )
    torch.testing.assert_close(chunked, dense, rtol=1e-5, atol=0)
    for c, d in zip(chunked_grads, dense_grads):
        _assert_grads_close(c, d)
