"""scpt.losses against the plain-Python float64 references of tests/reference.py (docs/design.md §2).

Every comparison is in float64 and must hold to 1e-10 relative, on the dense path (chunk_size=None)
and on the chunked custom-autograd path with chunk sizes 1 and 3.
"""

from __future__ import annotations

import math

import pytest
import torch

import reference as ref
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

CHUNKS = [None, 1, 3]
N = 7
D = 5


def _features(num_views: int, seed: int, dim: int = D, n: int = N) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, num_views, dim, generator=g, dtype=torch.float64)


def _positives(kind: str, seed: int) -> dict:
    """keyword arguments ``labels=`` / ``mask=`` for SupConLoss.forward, for a batch of N samples."""
    g = torch.Generator().manual_seed(seed + 1000)
    if kind == "singletons":
        return {"labels": torch.arange(N) * 3 + 5}  # all distinct, not 0..N-1
    if kind == "all_same":
        return {"labels": torch.full((N,), 4)}
    if kind == "mixed":  # classes of size 2, 1, 3, 1 (two classes with one sample)
        return {"labels": torch.tensor([2, 2, -1, 7, 7, 7, 9])}
    if kind == "unsupervised":
        return {}
    if kind == "mask_asym":  # random, asymmetric, random diagonal, one row all zero
        m = torch.rand(N, N, generator=g) < 0.35
        m[3] = False
        assert not torch.equal(m, m.T)
        return {"mask": m}
    if kind == "mask_zero_diag":  # symmetric class structure but the own sample's other views are not positives
        labels = torch.tensor([0, 0, 1, 1, 1, 2, 3])
        m = labels[:, None] == labels[None, :]
        m.fill_diagonal_(False)
        return {"mask": m}
    if kind == "mask_float01":  # 0/1 float mask, asymmetric, diagonal 1
        m = (torch.rand(N, N, generator=g) < 0.4).double()
        m.fill_diagonal_(1.0)
        return {"mask": m}
    raise AssertionError(kind)


SUPCON_KINDS = ["singletons", "all_same", "mixed", "unsupervised", "mask_asym", "mask_zero_diag", "mask_float01"]


# one view without labels or mask is an error (tested in test_losses_edge_cases)
VIEWS_AND_KINDS = [(v, k) for v in (1, 2, 3) for k in SUPCON_KINDS if not (k == "unsupervised" and v == 1)]


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize(("num_views", "kind"), VIEWS_AND_KINDS)
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_matches_reference(variant, num_views, kind, chunk_size):
    seed = 11 * num_views + SUPCON_KINDS.index(kind)
    features = _features(num_views, seed)
    pos = _positives(kind, seed)
    loss_fn = SupConLoss(temperature=0.1, variant=variant, chunk_size=chunk_size)
    got = loss_fn(features, **pos)
    expected = ref.supcon_batch(features, temperature=0.1, variant=variant, **pos)
    assert got.dtype == torch.float64
    ref.assert_rel(got, expected, what=f"SupCon {variant} {kind} V={num_views}")
    per = ref.supcon_batch_anchor_losses(features, temperature=0.1, variant=variant, **pos)
    assert loss_fn.last_stats.num_anchors == N * num_views
    assert loss_fn.last_stats.num_valid_anchors == sum(x is not None for x in per)


@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(
    ("temperature", "base_temperature"), [(0.07, None), (0.07, 0.07), (0.05, 0.07), (0.5, None), (1.0, 0.1), (2.0, 3.0)]
)
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_temperatures_and_normalize(variant, temperature, base_temperature, normalize, chunk_size):
    features = _features(2, seed=3)
    if not normalize:
        features = features * 0.4  # raw dot products of moderate size
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 3])
    loss_fn = SupConLoss(temperature, base_temperature, variant, normalize=normalize, chunk_size=chunk_size)
    got = loss_fn(features, labels)
    expected = ref.supcon_batch(
        features,
        labels,
        temperature=temperature,
        base_temperature=base_temperature,
        variant=variant,
        normalize=normalize,
    )
    ref.assert_rel(got, expected)


def test_base_temperature_scales_by_tau_over_base_tau():
    features, labels = _features(2, seed=5), torch.tensor([0, 1, 0, 2, 1, 1, 3])
    plain = SupConLoss(temperature=0.2)(features, labels)
    scaled = SupConLoss(temperature=0.2, base_temperature=0.07)(features, labels)
    ref.assert_rel(scaled, float(plain) * 0.2 / 0.07)


def test_mask_equivalent_to_labels_and_to_unsupervised():
    features = _features(3, seed=8)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 3])
    for variant in ("out", "in"):
        loss_fn = SupConLoss(variant=variant)
        by_labels = loss_fn(features, labels)
        by_mask = loss_fn(features, mask=labels[:, None] == labels[None, :])
        ref.assert_rel(by_mask, float(by_labels), rel=1e-13)
        unsup = loss_fn(features)
        by_eye = loss_fn(features, mask=torch.eye(N, dtype=torch.int64))
        ref.assert_rel(by_eye, float(unsup), rel=1e-13)


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("labels_kind", ["mixed", "singletons", "all_same"])
@pytest.mark.parametrize("num_views", [1, 2, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 1.0])
def test_dscl_matches_reference(alpha, num_views, labels_kind, chunk_size):
    seed = 7 * num_views + int(alpha * 10)
    features = _features(num_views, seed)
    labels = _positives(labels_kind, seed)["labels"]
    loss_fn = DSCLLoss(temperature=0.1, alpha=alpha, chunk_size=chunk_size)
    got = loss_fn(features, labels)
    expected = ref.dscl_batch(features, labels, temperature=0.1, alpha=alpha)
    ref.assert_rel(got, expected, what=f"DSCL alpha={alpha} {labels_kind} V={num_views}")
    per = ref.dscl_batch_anchor_losses(features, labels, temperature=0.1, alpha=alpha)
    assert loss_fn.last_stats.num_valid_anchors == sum(x is not None for x in per)


@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(("temperature", "base_temperature"), [(0.07, None), (0.3, 0.07), (1.0, 2.0)])
def test_dscl_temperatures_and_normalize(temperature, base_temperature, normalize, chunk_size):
    features = _features(2, seed=21) * (1.0 if normalize else 0.4)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 3])
    loss_fn = DSCLLoss(temperature, base_temperature, alpha=0.3, normalize=normalize, chunk_size=chunk_size)
    expected = ref.dscl_batch(
        features, labels, temperature=temperature, base_temperature=base_temperature, alpha=0.3, normalize=normalize
    )
    ref.assert_rel(loss_fn(features, labels), expected)


def test_dscl_alpha_changes_the_loss():
    """alpha really weights O(a) against C(a): distinct alphas give distinct (reference-checked) losses."""
    features, labels = _features(2, seed=4), torch.tensor([0, 1, 0, 2, 1, 1, 3])
    values = [float(DSCLLoss(alpha=a)(features, labels)) for a in (0.0, 0.5, 1.0)]
    assert len({round(v, 8) for v in values}) == 3
    # the loss is affine in alpha for anchors that have both O(a) and C(a), constant for the others
    assert values[1] == pytest.approx((values[0] + values[2]) / 2, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# SimCSE


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(("hard", "weight"), [(False, 0.0), (True, 0.0), (True, 0.7), (True, -1.3)])
def test_simcse_matches_reference(hard, weight, normalize, chunk_size):
    g = torch.Generator().manual_seed(31)
    z1, z2, z3 = (torch.randn(6, D, generator=g, dtype=torch.float64) for _ in range(3))
    if not normalize:
        z1, z2, z3 = z1 * 0.1, z2 * 0.1, z3 * 0.1
    z3 = z3 if hard else None
    loss_fn = SimCSELoss(temperature=0.05, hard_negative_weight=weight, normalize=normalize, chunk_size=chunk_size)
    got = loss_fn(torch.stack([z1, z2], dim=1), hard_negatives=z3)
    expected = ref.simcse_batch(z1, z2, z3, temperature=0.05, hard_negative_weight=weight, normalize=normalize)
    ref.assert_rel(got, expected)
    assert loss_fn.last_stats.num_anchors == loss_fn.last_stats.num_valid_anchors == 6


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_simcse_per_anchor_losses(chunk_size):
    g = torch.Generator().manual_seed(32)
    z1, z2, z3 = (
        torch.nn.functional.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1) for _ in range(3)
    )
    got = simcse_anchor_losses(z1, z2, z3, temperature=0.2, hard_negative_weight=0.5, chunk_size=chunk_size)
    assert got.valid.all()
    expected = ref.simcse_anchor_losses(z1, z2, z3, temperature=0.2, hard_negative_weight=0.5, normalize=False)
    ref.assert_rel(got.losses, expected)


def test_simcse_hard_negative_weight_is_a_log_weight_on_own_negative_only():
    """w = log(k) equals duplicating each anchor's own hard negative k times (and nothing else)."""
    g = torch.Generator().manual_seed(33)
    z1, z2, z3 = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    weighted = SimCSELoss(temperature=0.3, hard_negative_weight=math.log(3.0))(
        torch.stack([z1, z2], dim=1), hard_negatives=z3
    )
    expected = ref.simcse_batch(z1, z2, z3, temperature=0.3, hard_negative_weight=math.log(3.0))
    ref.assert_rel(weighted, expected)
    # explicit: per anchor, lse over [z2 ; z3] plus two extra copies of logit (i, z3_i)
    a = [ref.l2_normalize(r) for r in ref.to_floats(z1)]
    c = [ref.l2_normalize(r) for r in ref.to_floats(z2)]
    h = [ref.l2_normalize(r) for r in ref.to_floats(z3)]
    total = 0.0
    for i in range(4):
        logits = [ref.dot(a[i], x) / 0.3 for x in c] + [ref.dot(a[i], x) / 0.3 for x in h]
        logits += [ref.dot(a[i], h[i]) / 0.3] * 2
        total += ref.logsumexp(logits) - logits[i]
    assert math.isclose(float(weighted), total / 4, rel_tol=1e-10)


# --------------------------------------------------------------------------------------------------
# the functional cores: per-anchor losses, contrast-only entries (memory queue), anchors outside the
# contrast set


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_core_per_anchor_matches_module_layout(variant, chunk_size):
    """The module's call of the core (self_columns = arange(N*V)) gives the reference per-anchor losses."""
    n, v = 5, 2
    z = _unit(n * v, D, seed=40)
    labels = torch.tensor([0, 1, 0, 2, 1]).repeat_interleave(v)
    got = supcon_anchor_losses(
        z, z, SameLabel.from_labels(labels, labels), torch.arange(n * v), 0.1, variant, chunk_size
    )
    expected = ref.supcon_anchor_losses(
        z, z, ref.positives_from_labels(labels, labels), list(range(n * v)), 0.1, variant
    )
    assert got.valid.tolist() == [x is not None for x in expected]
    ref.assert_rel(got.losses, [x for x in expected if x is not None])


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_core_with_memory_queue(variant, chunk_size):
    """anchors = batch, contrast = cat(batch, queue): queue entries join A(a) and P(a), are never anchors."""
    batch_views, queue_size = 8, 6
    batch = _unit(batch_views, D, seed=41)
    queue = _unit(queue_size, D, seed=42)
    # label 5: only one batch entry, its positives live in the queue; label 9: in the queue only;
    # label 3: one batch entry and nothing in the queue (no positive at all)
    batch_labels = torch.tensor([0, 0, 1, 1, 5, 0, 3, 1])
    queue_labels = torch.tensor([5, 5, 9, 0, 1, 9])
    contrast = torch.cat([batch, queue])
    contrast_labels = torch.cat([batch_labels, queue_labels])
    got = supcon_anchor_losses(
        batch,
        contrast,
        SameLabel.from_labels(batch_labels, contrast_labels),
        torch.arange(batch_views),
        0.2,
        variant,
        chunk_size,
    )
    expected = ref.supcon_anchor_losses(
        batch,
        contrast,
        ref.positives_from_labels(batch_labels, contrast_labels),
        list(range(batch_views)),
        0.2,
        variant,
    )
    assert [x is not None for x in expected] == [True, True, True, True, True, True, False, True]
    assert got.valid.tolist() == [x is not None for x in expected]
    ref.assert_rel(got.losses, [x for x in expected if x is not None])
    # the queue matters: without it the values differ
    without = ref.supcon_anchor_losses(
        batch, batch, ref.positives_from_labels(batch_labels, batch_labels), list(range(batch_views)), 0.2, variant
    )
    assert abs(without[0] - expected[0]) > 1e-3


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_core_anchors_partly_outside_contrast(variant, chunk_size):
    """self_columns = -1 keeps every contrast entry in A(a); None means no anchor is in the contrast set."""
    anchors = _unit(4, D, seed=43)
    contrast = torch.cat([anchors[:2], _unit(5, D, seed=44)])
    a_labels, c_labels = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 1, 0, 0, 2, 1])
    positive = SameLabel.from_labels(a_labels, c_labels)
    ref_positive = ref.positives_from_labels(a_labels, c_labels)
    for self_columns, ref_columns in ((torch.tensor([0, 1, -1, -1]), [0, 1, None, None]), (None, None)):
        got = supcon_anchor_losses(anchors, contrast, positive, self_columns, 0.15, variant, chunk_size)
        expected = ref.supcon_anchor_losses(anchors, contrast, ref_positive, ref_columns, 0.15, variant)
        ref.assert_rel(got.losses, [x for x in expected if x is not None])
        assert got.valid.all()


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_core_sample_mask_with_queue(variant, chunk_size):
    """SampleMask over [S_a, S_c] samples where the contrast holds samples that are never anchors."""
    n_anchor_samples, v, n_queue = 3, 2, 4
    anchors = _unit(n_anchor_samples * v, D, seed=45)
    contrast = torch.cat([anchors, _unit(n_queue, D, seed=46)])
    anchor_samples = torch.arange(n_anchor_samples).repeat_interleave(v)
    contrast_samples = torch.cat([anchor_samples, torch.arange(n_anchor_samples, n_anchor_samples + n_queue)])
    mask = torch.tensor(
        [
            [1, 0, 0, 1, 0, 0, 1],
            [0, 0, 1, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 0, 0],  # sample 2: no positive at all
        ],
        dtype=torch.bool,
    )
    got = supcon_anchor_losses(
        anchors,
        contrast,
        SampleMask(mask, anchor_samples, contrast_samples),
        torch.arange(n_anchor_samples * v),
        0.1,
        variant,
        chunk_size,
    )
    expected = ref.supcon_anchor_losses(
        anchors,
        contrast,
        ref.positives_from_sample_mask(mask, anchor_samples, contrast_samples),
        list(range(n_anchor_samples * v)),
        0.1,
        variant,
    )
    assert got.valid.tolist() == [True, True, True, True, False, False]
    ref.assert_rel(got.losses, [x for x in expected if x is not None])


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_dscl_core_with_memory_queue(alpha, chunk_size):
    """Queue entries carry sample ids no anchor has: they can only be in C(a), never in O(a)."""
    n, v, q = 4, 2, 5
    batch = _unit(n * v, D, seed=47)
    queue = _unit(q, D, seed=48)
    labels = torch.tensor([0, 1, 0, 2]).repeat_interleave(v)
    queue_labels = torch.tensor([2, 1, 1, 3, 0])
    samples = torch.arange(n).repeat_interleave(v)
    queue_samples = torch.arange(n, n + q)
    contrast = torch.cat([batch, queue])
    c_labels, c_samples = torch.cat([labels, queue_labels]), torch.cat([samples, queue_samples])
    got = dscl_anchor_losses(
        batch,
        contrast,
        SameLabel.from_labels(labels, c_labels),
        SameLabel.from_labels(samples, c_samples),
        torch.arange(n * v),
        0.1,
        alpha,
        chunk_size,
    )
    expected = ref.dscl_anchor_losses(
        batch, contrast, labels, c_labels, samples, c_samples, list(range(n * v)), 0.1, alpha
    )
    assert got.valid.all()
    ref.assert_rel(got.losses, expected)


# --------------------------------------------------------------------------------------------------
# the loss modules with a memory (queue) of contrast-only entries: loss(features, labels, memory=, memory_labels=)


def _memory_case(seed: int):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(5, 2, D, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1])
    memory = torch.randn(7, D, generator=g, dtype=torch.float64)
    memory_labels = torch.tensor([2, 2, 0, 9, 1, 0, 9])  # 9: only in the memory
    return features, labels, memory, memory_labels


def _reference_with_memory(features, labels, memory, memory_labels, anchor_losses):
    """Anchors = the batch views (sample-major), contrast = cat(batch views, memory), in float64 loops."""
    z = torch.nn.functional.normalize(features.flatten(0, 1), dim=1)
    contrast = torch.cat([z, torch.nn.functional.normalize(memory, dim=1)])
    view_labels = labels.repeat_interleave(features.shape[1])
    return z, contrast, view_labels, torch.cat([view_labels, memory_labels])


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_module_with_memory_matches_reference(variant, chunk_size):
    features, labels, memory, memory_labels = _memory_case(60)
    z, contrast, view_labels, contrast_labels = _reference_with_memory(features, labels, memory, memory_labels, None)
    per = ref.supcon_anchor_losses(
        z, contrast, ref.positives_from_labels(view_labels, contrast_labels), list(range(len(z))), 0.1, variant
    )
    loss_fn = SupConLoss(temperature=0.1, variant=variant, chunk_size=chunk_size)
    got = loss_fn(features, labels, memory=memory, memory_labels=memory_labels)
    ref.assert_rel(got, ref.batch_mean(per, 0.1, None))
    assert loss_fn.last_stats.num_anchors == 10  # memory entries are never anchors
    # memory with no entries = no memory
    empty = loss_fn(features, labels, memory=memory[:0], memory_labels=memory_labels[:0])
    ref.assert_rel(empty, ref.supcon_batch(features, labels, temperature=0.1, variant=variant))


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_dscl_module_with_memory_matches_reference(chunk_size):
    """Memory entries join A(a) and C(a) (same class, other sample), never O(a)."""
    features, labels, memory, memory_labels = _memory_case(61)
    z, contrast, view_labels, contrast_labels = _reference_with_memory(features, labels, memory, memory_labels, None)
    samples = torch.arange(5).repeat_interleave(2).tolist()
    per = ref.dscl_anchor_losses(
        z,
        contrast,
        view_labels.tolist(),
        contrast_labels.tolist(),
        samples,
        samples + [-1] * 7,
        list(range(10)),
        0.1,
        0.3,
    )
    got = DSCLLoss(temperature=0.1, alpha=0.3, chunk_size=chunk_size)(
        features, labels, memory=memory, memory_labels=memory_labels
    )
    ref.assert_rel(got, ref.batch_mean(per, 0.1, None))


def test_unsupervised_supcon_memory_entries_are_negatives_only():
    features, _, memory, _ = _memory_case(62)
    z, contrast, _, _ = _reference_with_memory(features, torch.zeros(5, dtype=torch.long), memory, torch.zeros(7), None)
    samples = torch.arange(5).repeat_interleave(2)
    contrast_ids = torch.cat([samples, torch.full((7,), -1)])
    per = ref.supcon_anchor_losses(
        z, contrast, ref.positives_from_labels(samples, contrast_ids), list(range(10)), 0.2, "out"
    )
    got = SupConLoss(temperature=0.2)(features, memory=memory)
    ref.assert_rel(got, ref.batch_mean(per, 0.2, None))


def test_simcse_memory_adds_negatives():
    g = torch.Generator().manual_seed(63)
    z1, z2, z3, memory = (torch.randn(n, D, generator=g, dtype=torch.float64) for n in (4, 4, 4, 3))
    got = SimCSELoss(temperature=0.3, hard_negative_weight=0.5)(
        torch.stack([z1, z2], dim=1), hard_negatives=z3, memory=memory
    )
    a, c, h, m = (torch.nn.functional.normalize(x, dim=1) for x in (z1, z2, z3, memory))
    total = 0.0
    for i in range(4):
        logits = (
            [float(a[i] @ x) / 0.3 for x in c] + [float(a[i] @ x) / 0.3 for x in h] + [float(a[i] @ x) / 0.3 for x in m]
        )
        logits[4 + i] += 0.5
        total += ref.logsumexp(logits) - logits[i]
    assert math.isclose(float(got), total / 4, rel_tol=1e-10)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda f, y, m: SupConLoss()(f, y, memory=m), r"memory needs memory_labels \[K\]"),
        (
            lambda f, y, m: SupConLoss()(f, y, memory=m, memory_labels=torch.zeros(6, dtype=torch.long)),
            r"memory_labels must have shape \[K\] = \[7\]",
        ),
        (
            lambda f, y, m: SupConLoss()(f, y, memory_labels=torch.zeros(7, dtype=torch.long)),
            r"memory_labels given without memory",
        ),
        (lambda f, y, m: SupConLoss()(f, mask=torch.eye(5, dtype=torch.bool), memory=m), r"no mask relation"),
        (
            lambda f, y, m: DSCLLoss()(f, y, memory=m[:, :3], memory_labels=torch.zeros(7, dtype=torch.long)),
            r"memory must have shape \[K, D\] with D = 5",
        ),
    ],
)
def test_memory_bad_input(call, pattern):
    features, labels, memory, _ = _memory_case(64)
    with pytest.raises(ValueError, match=pattern):
        call(features, labels, memory)


def test_memory_gets_no_gradient_and_the_batch_gradient_matches_a_dense_float64_formulation():
    """The gradient with memory against the textbook dense SupCon (explicit logits, -inf on self,
    log-softmax over batch + memory, mean over each anchor's positives) under float64 autograd."""
    features, labels, memory, memory_labels = _memory_case(65)
    leaf = features.clone().requires_grad_()
    memory_leaf = memory.clone().requires_grad_()
    SupConLoss(temperature=0.1)(leaf, labels, memory=memory_leaf, memory_labels=memory_labels).backward()
    assert memory_leaf.grad is None

    dense_leaf = features.clone().requires_grad_()
    z = torch.nn.functional.normalize(dense_leaf, dim=-1).flatten(0, 1)  # [10, D]
    contrast = torch.cat([z, torch.nn.functional.normalize(memory, dim=1)])  # [17, D]
    view_labels = labels.repeat_interleave(2)
    logits = z @ contrast.T / 0.1  # [10, 17]
    is_self = torch.zeros_like(logits, dtype=torch.bool)
    is_self[torch.arange(10), torch.arange(10)] = True
    log_prob = torch.log_softmax(logits.masked_fill(is_self, float("-inf")), dim=1)
    positive = (view_labels[:, None] == torch.cat([view_labels, memory_labels])[None, :]) & ~is_self
    per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(1)) / positive.sum(1)
    per_anchor[positive.sum(1) > 0].mean().backward()
    torch.testing.assert_close(leaf.grad, dense_leaf.grad, rtol=1e-10, atol=1e-12)
