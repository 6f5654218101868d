"""Identities the losses must satisfy (docs/design.md §2), and agreement with independent implementations.

(a) Jensen: L_in(a) <= L_out(a) for every anchor (the correct direction; some write-ups reverse it).
(b) DSCL with alpha = 1/(m + 1) is SupCon L_out on a balanced V = 2 batch with |C(a)| = m.
(c) DSCL with V = 1 is SupCon L_out for any alpha (O(a) is empty, all weight goes to C(a)).
(d) The closed-form anchor gradient of docs/design.md §2 equals autograd, for L_out and L_in; with all
    positives equal to their mean the two variants give the same anchor gradient.
(e) pytorch-metric-learning's SupConLoss, and the documented differences from it.
(f) SimCSE equals torch.nn.functional.cross_entropy on the explicit cos/tau logit matrix.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses

import reference as ref
from scpt.losses import DSCLLoss, SameLabel, SimCSELoss, SupConLoss, supcon_anchor_losses


def _randn(*shape: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# (a) Jensen


@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_l_in_is_at_most_l_out_for_every_anchor(seed, temperature):
    n, v = 12, 2
    z = F.normalize(_randn(n * v, 6, seed=seed), dim=1)
    g = torch.Generator().manual_seed(100 + seed)
    labels = torch.randint(0, 4, (n,), generator=g).repeat_interleave(v)
    positives = SameLabel.from_labels(labels, labels)
    self_columns = torch.arange(n * v)
    l_out = supcon_anchor_losses(z, z, positives, self_columns, temperature, "out")
    l_in = supcon_anchor_losses(z, z, positives, self_columns, temperature, "in")
    assert torch.equal(l_out.valid, l_in.valid) and bool(l_out.valid.all())
    assert bool((l_in.losses <= l_out.losses + 1e-12).all()), (l_in.losses - l_out.losses).max()
    # strict where an anchor has several positives with different similarities, equal with one positive
    counts = (labels[:, None] == labels[None, :]).sum(1) - 1
    several = counts > 1
    assert bool((l_in.losses[several] < l_out.losses[several] - 1e-9).all())
    torch.testing.assert_close(l_in.losses[~several], l_out.losses[~several], rtol=1e-13, atol=0)


@pytest.mark.parametrize("seed", [3, 4])
def test_l_in_batch_loss_below_l_out(seed):
    features = _randn(10, 3, 5, seed=seed)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 3])
    l_out = SupConLoss(temperature=0.1, variant="out")(features, labels)
    l_in = SupConLoss(temperature=0.1, variant="in")(features, labels)
    assert float(l_in) < float(l_out)


# --------------------------------------------------------------------------------------------------
# (b), (c) DSCL reduces to SupCon L_out


@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("samples_per_class", [2, 3, 4])
def test_dscl_with_alpha_one_over_m_plus_one_is_supcon_out(samples_per_class, chunk_size):
    num_classes, v = 3, 2
    n = num_classes * samples_per_class
    features = _randn(n, v, 5, seed=10 + samples_per_class)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(num_classes).repeat(samples_per_class)[order]
    m = v * (samples_per_class - 1)  # same-class entries of other samples, for every anchor
    supcon = SupConLoss(temperature=0.1, variant="out", chunk_size=chunk_size)(features, labels)
    dscl = DSCLLoss(temperature=0.1, alpha=1.0 / (m + 1), chunk_size=chunk_size)(features, labels)
    ref.assert_rel(dscl, float(supcon), rel=1e-12)
    # and another alpha does not
    other = DSCLLoss(temperature=0.1, alpha=0.5 / (m + 1), chunk_size=chunk_size)(features, labels)
    assert abs(float(other) - float(supcon)) > 1e-6


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 1.0])
def test_dscl_with_one_view_is_supcon_out(alpha, chunk_size):
    features = _randn(9, 4, seed=20)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0, 2])  # label 3: a singleton, excluded by both
    supcon_fn = SupConLoss(temperature=0.2, variant="out", chunk_size=chunk_size)
    dscl_fn = DSCLLoss(temperature=0.2, alpha=alpha, chunk_size=chunk_size)
    ref.assert_rel(dscl_fn(features, labels), float(supcon_fn(features, labels)), rel=1e-12)
    # the same stats, except the floor: DSCL defines none (unequal positive weights can go below SupCon's)
    assert dscl_fn.last_stats == replace(supcon_fn.last_stats, floor_loss=dscl_fn.last_stats.floor_loss)
    assert math.isnan(dscl_fn.last_stats.floor_loss)
    assert float(supcon_fn.last_stats.floor_loss) < float(supcon_fn(features, labels))
    assert dscl_fn.last_stats.num_valid_anchors == 8


# --------------------------------------------------------------------------------------------------
# (d) closed-form anchor gradient


def _anchor_gradients(anchors, contrast, labels_a, labels_c, self_columns, temperature, variant, chunk_size):
    """Autograd gradient of each per-anchor loss w.r.t. its own (free) anchor vector."""
    anchors = anchors.detach().clone().requires_grad_()
    positives = SameLabel.from_labels(labels_a, labels_c)
    out = supcon_anchor_losses(anchors, contrast.detach(), positives, self_columns, temperature, variant, chunk_size)
    assert bool(out.valid.all())
    (grad,) = torch.autograd.grad(out.losses.sum(), anchors)  # loss i depends on anchor i only
    return out.losses.detach(), grad


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("variant", ["out", "in"])
def test_closed_form_anchor_gradient(variant, chunk_size):
    """normalize=False, dot products: dL_i/dh_i = (1/tau)[sum_P h_p (P_ip - X_ip) + sum_N h_n P_in]."""
    tau = 0.3
    contrast = _randn(9, 4, seed=30) * 0.7
    labels_c = torch.tensor([0, 1, 0, 2, 1, 0, 2, 1, 3])
    # anchors 0..4 are the first contrast entries (their own column is removed from A(a)); anchor 5 is
    # a free vector outside the contrast set
    anchors = torch.cat([contrast[:5], _randn(1, 4, seed=31)])
    labels_a = torch.cat([labels_c[:5], torch.tensor([2])])
    self_columns = torch.tensor([0, 1, 2, 3, 4, -1])
    _, grad = _anchor_gradients(anchors, contrast, labels_a, labels_c, self_columns, tau, variant, chunk_size)
    for i in range(anchors.shape[0]):
        removed = None if self_columns[i] < 0 else int(self_columns[i])
        positive_columns = [b for b in range(contrast.shape[0]) if labels_c[b] == labels_a[i] and b != removed]
        expected = ref.supcon_anchor_gradient(anchors[i], contrast, positive_columns, removed, tau, variant)
        ref.assert_rel(grad[i], expected, rel=1e-10, abs_=1e-13, what=f"anchor {i}")


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_equal_positives_give_equal_anchor_gradients(chunk_size):
    """If every h_p equals their mean, X_ip = 1/|P| for both variants: same loss, same anchor gradient."""
    tau = 0.25
    u = _randn(4, 5, seed=32)
    # class c is |P_c| identical copies of u[c]; class 3 are negatives for everyone
    labels_c = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    contrast = u[labels_c].clone()
    contrast[9] = _randn(5, seed=33)
    anchors = _randn(3, 5, seed=34)
    labels_a = torch.tensor([0, 1, 2])
    l_out, g_out = _anchor_gradients(anchors, contrast, labels_a, labels_c, None, tau, "out", chunk_size)
    l_in, g_in = _anchor_gradients(anchors, contrast, labels_a, labels_c, None, tau, "in", chunk_size)
    torch.testing.assert_close(l_in, l_out, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_in, g_out, rtol=1e-12, atol=1e-14)
    # ... and not once one positive moves away from the others
    contrast[0] += 0.5
    _, g_out = _anchor_gradients(anchors, contrast, labels_a, labels_c, None, tau, "out", chunk_size)
    _, g_in = _anchor_gradients(anchors, contrast, labels_a, labels_c, None, tau, "in", chunk_size)
    assert float((g_in[0] - g_out[0]).abs().max()) > 1e-4
    torch.testing.assert_close(g_in[1:], g_out[1:], rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# (e) pytorch-metric-learning
#
# PML's SupConLoss takes flattened embeddings [N*V, D] with labels [N*V] and, like scpt, uses cosine
# similarity, A(a) = every other embedding, and L_out. It has no notion of "anchor without positive":
# such an anchor's loss is computed as 0 / (0 + finfo.tiny) = 0, and its default AvgNonZeroReducer
# then averages only the losses that are > 0. So on an ordinary batch it excludes anchors without
# positives exactly like scpt does (the mean is over the others). The exclusion is by *value*,
# though, not by positive count, which makes PML differ from scpt (and from docs/design.md §2) when
#   - a valid anchor's loss is exactly 0 (e.g. underflows at a small temperature: its positive is
#     far more similar than every negative): PML drops it from the mean, scpt counts it; and
#   - the batch has no negative pair at all (one label): PML returns 0 (it needs both a positive and
#     a negative pair somewhere), scpt returns the true, positive loss.
# When no anchor has a positive both return 0.


def _pml(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    n, v, d = features.shape
    return pml_losses.SupConLoss(temperature=temperature)(features.reshape(n * v, d), labels.repeat_interleave(v))


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
@pytest.mark.parametrize("case", ["labels_v2", "labels_v3", "labels_v1_no_singletons", "unsupervised_v2"])
def test_matches_pml_when_every_anchor_has_a_positive(case, temperature):
    g = torch.Generator().manual_seed(40)
    if case == "labels_v2":
        features, labels = _randn(10, 2, 6, seed=41), torch.randint(0, 6, (10,), generator=g)
    elif case == "labels_v3":
        features, labels = _randn(8, 3, 6, seed=42), torch.randint(0, 8, (8,), generator=g)
    elif case == "labels_v1_no_singletons":
        features, labels = _randn(10, 1, 6, seed=43), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    else:
        features, labels = _randn(9, 2, 6, seed=44), None
    loss_fn = SupConLoss(temperature=temperature)
    ours = loss_fn(features) if labels is None else loss_fn(features, labels)
    assert loss_fn.last_stats.valid_fraction == 1.0
    pml = _pml(features, torch.arange(features.shape[0]) if labels is None else labels, temperature)
    ref.assert_rel(ours, float(pml), rel=1e-10)


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_gradient_matches_pml(chunk_size):
    features = _randn(8, 2, 5, seed=45)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 3, 2])
    leaf_ours = features.clone().requires_grad_()
    leaf_pml = features.clone().requires_grad_()
    SupConLoss(temperature=0.1, chunk_size=chunk_size)(leaf_ours, labels).backward()
    _pml(leaf_pml, labels, 0.1).backward()
    torch.testing.assert_close(leaf_ours.grad, leaf_pml.grad, rtol=1e-9, atol=1e-12)


def test_matches_pml_with_some_anchors_without_positive():
    """Both leave anchors without positives out of the mean (PML through its AvgNonZeroReducer)."""
    features = _randn(8, 1, 5, seed=46)
    labels = torch.tensor([0, 1, 0, 2, 1, 3, 4, 0])  # 2, 3, 4 are singletons
    loss_fn = SupConLoss(temperature=0.1)
    ours = loss_fn(features, labels)
    assert (loss_fn.last_stats.num_anchors, loss_fn.last_stats.num_valid_anchors) == (8, 5)
    ref.assert_rel(ours, float(_pml(features, labels, 0.1)), rel=1e-10)
    ref.assert_rel(ours, ref.supcon_batch(features, labels, temperature=0.1), rel=1e-10)


def test_differs_from_pml_when_a_valid_anchor_loss_is_exactly_zero():
    """PML drops valid anchors whose loss underflows to 0; scpt keeps them in the mean (docs/design.md §2)."""
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)[:, None, :]
    labels = torch.tensor([0, 0, 1, 1])
    # tau = 0.01: anchors 0, 1, 2 have losses log(1 + e^-100 + ...) == 0 in float64, anchor 3 has log 3
    loss_fn = SupConLoss(temperature=0.01)
    ours = loss_fn(features, labels)
    assert loss_fn.last_stats.num_valid_anchors == 4
    ref.assert_rel(ours, math.log(3) / 4, rel=1e-12)
    ref.assert_rel(ours, ref.supcon_batch(features, labels, temperature=0.01), rel=1e-12)
    ref.assert_rel(_pml(features, labels, 0.01), math.log(3), rel=1e-12)


def test_differs_from_pml_without_any_negative_pair():
    """One label for the whole batch: PML returns 0, scpt the true loss (every anchor has positives)."""
    features = _randn(5, 2, 4, seed=47)
    labels = torch.zeros(5, dtype=torch.long)
    ours = SupConLoss(temperature=0.1)(features, labels)
    expected = ref.supcon_batch(features, labels, temperature=0.1)
    assert expected > 0.5
    ref.assert_rel(ours, expected)
    assert float(_pml(features, labels, 0.1)) == 0.0


def test_both_zero_when_no_anchor_has_a_positive():
    features = _randn(6, 1, 4, seed=48)
    labels = torch.arange(6)
    assert float(SupConLoss()(features, labels)) == 0.0
    assert float(_pml(features, labels, 0.07)) == 0.0


# --------------------------------------------------------------------------------------------------
# (f) SimCSE against F.cross_entropy on explicit logits


@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize(("hard", "weight"), [(False, 0.0), (True, 0.0), (True, 1.5)])
def test_simcse_is_cross_entropy_on_cosine_logits(hard, weight, chunk_size):
    tau, n = 0.05, 7
    z1, z2, z3 = (_randn(n, 8, seed=50 + k) for k in range(3))
    leaves = [z.clone().requires_grad_() for z in (z1, z2, z3)]
    explicit = [z.clone().requires_grad_() for z in (z1, z2, z3)]

    ours = SimCSELoss(temperature=tau, hard_negative_weight=weight, chunk_size=chunk_size)(
        torch.stack([leaves[0], leaves[1]], dim=1), hard_negatives=leaves[2] if hard else None
    )
    a, b, c = (F.normalize(z, dim=1) for z in explicit)
    logits = F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1) / tau
    if hard:
        hard_logits = F.cosine_similarity(a[:, None, :], c[None, :, :], dim=-1) / tau
        hard_logits = hard_logits + weight * torch.eye(n, dtype=z1.dtype)  # w on logit (i, z3_i) only
        logits = torch.cat([logits, hard_logits], dim=1)
    theirs = F.cross_entropy(logits, torch.arange(n))
    ref.assert_rel(ours, float(theirs.detach()), rel=1e-10)

    ours.backward()
    theirs.backward()
    for mine, other in zip(leaves[: 3 if hard else 2], explicit[: 3 if hard else 2]):
        torch.testing.assert_close(mine.grad, other.grad, rtol=1e-9, atol=1e-12)


def test_simcse_default_temperature_and_float32():
    z1, z2 = _randn(16, 32, seed=60, dtype=torch.float32), _randn(16, 32, seed=61, dtype=torch.float32)
    loss_fn = SimCSELoss()
    assert loss_fn.temperature == 0.05
    logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / 0.05
    torch.testing.assert_close(
        loss_fn(torch.stack([z1, z2], dim=1)), F.cross_entropy(logits, torch.arange(16)), rtol=1e-5, atol=1e-6
    )
