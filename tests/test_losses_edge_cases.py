"""Degenerate batches, input validation, half precision and autocast for the contrastive losses."""

from __future__ import annotations

import math
import re

import pytest
import torch

import reference as ref
from scpt.losses import DSCLLoss, LossStats, SameLabel, SimCSELoss, SupConLoss, supcon_anchor_losses


def _randn(*shape: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _value(v) -> str:
    """Regex for a value as the error messages print it (``{value!r}``), at the end of the message."""
    return re.escape(repr(v)) + "$"


# --------------------------------------------------------------------------------------------------
# known values on degenerate batches


@pytest.mark.parametrize("variant", ["out", "in"])
def test_one_sample_one_view_has_no_positive(variant):
    features = _randn(1, 4, seed=0).requires_grad_()
    loss_fn = SupConLoss(variant=variant)
    loss = loss_fn(features, torch.tensor([3]))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    assert _counts(loss_fn.last_stats) == (1, 0)


@pytest.mark.parametrize("chunk_size", [None, 1])
@pytest.mark.parametrize(
    ("num_views", "variant", "expected"),
    [
        (2, "out", 0.0),  # A(a) = P(a) = {the other view}: -log 1
        (2, "in", 0.0),
        (3, "in", math.log(2)),  # A(a) = P(a), |P| = 2: lse_A - lse_P + log|P| = log 2, whatever the features
    ],
)
def test_one_sample_several_views(num_views, variant, expected, chunk_size):
    features = _randn(1, num_views, 5, seed=1)
    loss_fn = SupConLoss(temperature=0.1, variant=variant, chunk_size=chunk_size)
    for loss in (loss_fn(features), loss_fn(features, torch.tensor([7]))):
        assert loss.item() == pytest.approx(expected, abs=1e-14)
        assert _counts(loss_fn.last_stats) == (num_views, num_views)


def test_one_sample_three_views_l_out_matches_reference():
    features = _randn(1, 3, 5, seed=2)
    ref.assert_rel(SupConLoss(temperature=0.1)(features), ref.supcon_batch(features, temperature=0.1))


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize(("n", "v"), [(4, 1), (3, 2), (2, 3)])
def test_identical_embeddings_give_log_of_contrast_size(n, v, variant):
    """All s_ab equal: L_out = L_in = log |A(a)| = log(NV - 1) for every anchor, times tau/base_tau."""
    features = torch.ones(n, v, 3, dtype=torch.float64) * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])[:n]
    loss = SupConLoss(temperature=0.2, base_temperature=0.1, variant=variant)(features, labels)
    assert loss.item() == pytest.approx(2.0 * math.log(n * v - 1), rel=1e-13)


LOSSES_WITH_LABELS = {
    "supcon_out": lambda c: SupConLoss(variant="out", chunk_size=c),
    "supcon_in": lambda c: SupConLoss(variant="in", chunk_size=c),
    "dscl": lambda c: DSCLLoss(alpha=0.3, chunk_size=c),
}


@pytest.mark.parametrize("chunk_size", [None, 1])
@pytest.mark.parametrize("name", list(LOSSES_WITH_LABELS))
def test_all_labels_distinct_one_view_is_exact_zero_on_the_graph(name, chunk_size):
    features = _randn(6, 4, seed=3).requires_grad_()
    loss_fn = LOSSES_WITH_LABELS[name](chunk_size)
    loss = loss_fn(features, torch.tensor([5, 1, 9, 0, 2, 7]))
    assert loss.item() == 0.0
    assert loss.requires_grad and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
    assert _counts(loss_fn.last_stats) == (6, 0)
    assert loss_fn.last_stats.valid_fraction == 0.0


def test_all_zero_mask_is_exact_zero_on_the_graph():
    features = _randn(3, 2, 4, seed=4, dtype=torch.float32).requires_grad_()
    loss_fn = SupConLoss()
    loss = loss_fn(features, mask=torch.zeros(3, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.dtype == torch.float32 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
    assert _counts(loss_fn.last_stats) == (6, 0)


def test_no_positive_is_exact_zero_even_for_huge_raw_features():
    """The "exact 0 on the graph" must not depend on the feature values (normalize=False, finite input).

    Fails today: mean_over_valid returns ``graph_source.sum() * 0.0``; the fp32 sum of large finite
    features overflows to inf and inf * 0 = NaN. (``(graph_source * 0.0).sum()`` would stay 0.)
    """
    features = torch.full((3, 4), 3e38, dtype=torch.float32, requires_grad=True)
    loss = SupConLoss(normalize=False)(features, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("variant", ["out", "in"])
def test_anchors_without_positive_are_excluded_from_the_mean(variant, chunk_size):
    features = _randn(8, 5, seed=5)
    labels = torch.tensor([0, 1, 0, 2, 1, 3, 4, 0])  # 2, 3, 4: singletons, no positive with one view
    loss_fn = SupConLoss(temperature=0.1, variant=variant, chunk_size=chunk_size)
    loss = loss_fn(features, labels)
    per = ref.supcon_batch_anchor_losses(features, labels, temperature=0.1, variant=variant)
    valid = [x for x in per if x is not None]
    assert len(valid) == 5
    ref.assert_rel(loss, math.fsum(valid) / 5)
    assert float(loss) > math.fsum(valid) / 8 * 1.5  # not SupContrast's diluted mean over all 8
    assert _counts(loss_fn.last_stats) == (8, 5)
    assert loss_fn.last_stats.valid_fraction == pytest.approx(5 / 8)


def test_mask_row_without_positive_excludes_both_views():
    features = _randn(4, 2, 5, seed=6)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    loss_fn = SupConLoss(temperature=0.2)
    ref.assert_rel(loss_fn(features, mask=mask), ref.supcon_batch(features, mask=mask, temperature=0.2))
    assert _counts(loss_fn.last_stats) == (8, 6)


def test_dscl_singleton_class_uses_own_views_only():
    """C(a) empty: all weight on O(a), whatever alpha; O(a) empty and C(a) empty: excluded."""
    features = _randn(4, 2, 5, seed=7)
    labels = torch.tensor([0, 0, 1, 2])
    values = {alpha: DSCLLoss(temperature=0.2, alpha=alpha)(features, labels) for alpha in (0.0, 0.4)}
    for alpha, value in values.items():
        ref.assert_rel(value, ref.dscl_batch(features, labels, temperature=0.2, alpha=alpha))
    loss_fn = DSCLLoss(alpha=0.4)
    loss_fn(features[:, :1], labels)
    assert _counts(loss_fn.last_stats) == (4, 2)


def test_last_stats_before_any_call_is_none():
    assert SupConLoss().last_stats is None and DSCLLoss().last_stats is None and SimCSELoss().last_stats is None


# --------------------------------------------------------------------------------------------------
# bad inputs: ValueError naming the problem and the value

FEAT = _randn(4, 2, 8, seed=10, dtype=torch.float32)
LABELS = torch.tensor([0, 1, 0, 1])


def _with(index: tuple[int, ...], value: float) -> torch.Tensor:
    f = FEAT.clone()
    f[index] = value
    return f


SUPCON_BAD_CALLS = {
    "features_1d": (lambda: SupConLoss()(torch.ones(8), LABELS[:1]), r"got a 1-d tensor of shape \(8,\)"),
    "features_4d": (
        lambda: SupConLoss()(torch.ones(2, 2, 2, 2), LABELS[:2]),
        r"got a 4-d tensor of shape \(2, 2, 2, 2\)",
    ),
    "features_empty": (
        lambda: SupConLoss()(torch.ones(0, 2, 4), LABELS[:0]),
        r"must not be empty, got shape \(0, 2, 4\)",
    ),
    "features_int": (
        lambda: SupConLoss()(torch.ones(4, 2, 3, dtype=torch.int64), LABELS),
        r"floating-point tensor, got dtype torch.int64",
    ),
    "labels_and_mask": (
        lambda: SupConLoss()(FEAT, LABELS, mask=torch.eye(4, dtype=torch.bool)),
        r"labels or mask, not both",
    ),
    "label_count": (lambda: SupConLoss()(FEAT, torch.tensor([0, 1, 0])), r"\[N\] = \[4\].*got shape \(3,\)"),
    "labels_2d": (lambda: SupConLoss()(FEAT, LABELS[:, None]), r"\[N\] = \[4\].*got shape \(4, 1\)"),
    "labels_float": (lambda: SupConLoss()(FEAT, LABELS.float()), r"integer tensor, got dtype torch.float32"),
    "mask_shape": (
        lambda: SupConLoss()(FEAT, mask=torch.ones(4, 3, dtype=torch.bool)),
        r"\[N, N\] = \[4, 4\], got \(4, 3\)",
    ),
    "mask_non_binary_float": (
        lambda: SupConLoss()(FEAT, mask=torch.eye(4).index_put_((torch.tensor(1), torch.tensor(2)), torch.tensor(0.5))),
        r"only 0 and 1.*got 0\.5 at \(1, 2\)",
    ),
    "mask_non_binary_int": (
        lambda: SupConLoss()(FEAT, mask=torch.eye(4, dtype=torch.int64) * 2),
        r"only 0 and 1.*got 2 at \(0, 0\)",
    ),
    "one_view_2d_no_labels": (lambda: SupConLoss()(FEAT[:, 0]), r"one view \(features of shape \(4, 8\)\)"),
    "one_view_3d_no_labels": (lambda: SupConLoss()(FEAT[:, :1]), r"one view \(features of shape \(4, 1, 8\)\)"),
    "nan": (
        lambda: SupConLoss()(_with((1, 0, 2), math.nan), LABELS),
        r"NaN or Inf, first at index \(1, 0, 2\) \(value nan\)",
    ),
    "inf": (
        lambda: SupConLoss()(_with((2, 1, 0), math.inf), LABELS),
        r"NaN or Inf, first at index \(2, 1, 0\) \(value inf\)",
    ),
    "neg_inf_raw": (
        lambda: SupConLoss(normalize=False)(_with((3, 1, 7), -math.inf), LABELS),
        r"NaN or Inf, first at index \(3, 1, 7\) \(value -inf\)",
    ),
    "zero_vector": (
        lambda: SupConLoss()(_with((2, 1), 0.0), LABELS),
        r"features has a zero vector at \[sample, view\] \(2, 1\);.*normalize=False",
    ),
    "zero_vector_2d": (
        lambda: SupConLoss()(_with((3,), 0.0)[:, 0], LABELS),
        r"features has a zero vector at \[sample, view\] \(3, 0\)",
    ),
    "core_variant": (
        lambda: supcon_anchor_losses(FEAT[:, 0], FEAT[:, 0], SameLabel.from_labels(LABELS, LABELS), None, 0.1, "both"),
        r"variant must be 'out' or 'in', got 'both'",
    ),
}


@pytest.mark.parametrize("name", list(SUPCON_BAD_CALLS))
def test_supcon_bad_input(name):
    call, pattern = SUPCON_BAD_CALLS[name]
    with pytest.raises(ValueError, match=pattern):
        call()


def test_zero_vector_accepted_without_normalize():
    features = _with((2, 1), 0.0).double()
    loss = SupConLoss(temperature=0.5, normalize=False)(features, LABELS)
    ref.assert_rel(loss, ref.supcon_batch(features, LABELS, temperature=0.5, normalize=False))


@pytest.mark.parametrize("cls", [SupConLoss, DSCLLoss, SimCSELoss])
@pytest.mark.parametrize("value", [0, 0.0, -0.07, math.nan, math.inf, -math.inf, "0.1", True])
def test_bad_temperature(cls, value):
    pattern = rf"{cls.__name__}: temperature must be a finite number > 0, got {_value(value)}"
    with pytest.raises(ValueError, match=pattern):
        cls(temperature=value)


@pytest.mark.parametrize("cls", [SupConLoss, DSCLLoss])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_bad_base_temperature(cls, value):
    pattern = rf"{cls.__name__}: base_temperature must be a finite number > 0, got {_value(value)}"
    with pytest.raises(ValueError, match=pattern):
        cls(base_temperature=value)


@pytest.mark.parametrize("value", [-0.1, 1.5, -1e-12, 1.0 + 1e-12, math.nan, math.inf, True])
def test_bad_alpha(value):
    with pytest.raises(ValueError, match=rf"alpha must be in \[0, 1\], got {_value(value)}"):
        DSCLLoss(alpha=value)


@pytest.mark.parametrize("value", ["mid", "OUT", "", None])
def test_bad_variant(value):
    with pytest.raises(ValueError, match=rf"variant must be 'out' or 'in', got {_value(value)}"):
        SupConLoss(variant=value)


@pytest.mark.parametrize("cls", [SupConLoss, DSCLLoss, SimCSELoss])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_bad_chunk_size(cls, value):
    with pytest.raises(ValueError, match=rf"chunk_size must be None \(automatic\) or an int >= 1, got {_value(value)}"):
        cls(chunk_size=value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1"])
def test_bad_hard_negative_weight(value):
    with pytest.raises(ValueError, match=rf"hard_negative_weight must be a finite number, got {_value(value)}"):
        SimCSELoss(hard_negative_weight=value)


DSCL_BAD_CALLS = {
    "labels_none": (lambda: DSCLLoss()(FEAT, None), r"labels are required \(DSCL is supervised\); got None"),
    "label_count": (lambda: DSCLLoss()(FEAT, torch.tensor([0, 1, 0, 1, 2])), r"\[N\] = \[4\].*got shape \(5,\)"),
    "labels_float": (lambda: DSCLLoss()(FEAT, LABELS.double()), r"integer tensor, got dtype torch.float64"),
    "features_4d": (lambda: DSCLLoss()(FEAT[None], LABELS), r"got a 4-d tensor of shape \(1, 4, 2, 8\)"),
    "nan": (lambda: DSCLLoss()(_with((0, 1, 3), math.nan), LABELS), r"first at index \(0, 1, 3\) \(value nan\)"),
    "zero_vector": (lambda: DSCLLoss()(_with((1, 0), 0.0), LABELS), r"zero vector at \[sample, view\] \(1, 0\)"),
}


@pytest.mark.parametrize("name", list(DSCL_BAD_CALLS))
def test_dscl_bad_input(name):
    call, pattern = DSCL_BAD_CALLS[name]
    with pytest.raises(ValueError, match=pattern):
        call()


Z = _randn(4, 8, seed=11, dtype=torch.float32)


def _z_with(index: tuple[int, ...], value: float) -> torch.Tensor:
    z = Z.clone()
    z[index] = value
    return z


def _views(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    return torch.stack([z1, z2], dim=1)


SIMCSE_BAD_CALLS = {
    "one_view": (
        lambda: SimCSELoss()(Z),
        r"needs two views per sample, features \[N, V >= 2, D\]; got shape \(4, 1, 8\)",
    ),
    "old_z1_z2_call": (
        lambda: SimCSELoss()(Z, Z),
        r"takes features \[N, V >= 2, D\].*torch\.stack\(\[z1, z2\], dim=1\)",
    ),
    "hard_negatives_count": (
        lambda: SimCSELoss()(_views(Z, Z), hard_negatives=Z[:3]),
        r"hard_negatives must have the shape of one view, \(4, 8\), got \(3, 8\)",
    ),
    "features_4d": (
        lambda: SimCSELoss()(Z[:, None, None].expand(4, 2, 2, 8)),
        r"features must have shape \[N, V, D\] \(V views\) or \[N, D\], got a 4-d tensor",
    ),
    "features_empty": (lambda: SimCSELoss()(_views(Z[:0], Z[:0])), r"features must not be empty"),
    "features_nan": (
        lambda: SimCSELoss()(_views(Z, _z_with((2, 5), math.nan))),
        r"features contains NaN or Inf, first at index \(2, 1, 5\) \(value nan\)",
    ),
    "features_int": (
        lambda: SimCSELoss()(_views(Z, Z).long()),
        r"features must be a floating-point tensor, got dtype torch.int64",
    ),
    "hard_negative_zero_vector": (
        lambda: SimCSELoss()(_views(Z, Z), hard_negatives=_z_with((1,), 0.0)),
        r"hard_negatives has a zero vector at row 1;.*normalize=False",
    ),
    "memory_dim": (
        lambda: SimCSELoss()(_views(Z, Z), memory=Z[:, :7]),
        r"memory must have shape \[K, D\] with D = 8, got \(4, 7\)",
    ),
}


@pytest.mark.parametrize("name", list(SIMCSE_BAD_CALLS))
def test_simcse_bad_input(name):
    call, pattern = SIMCSE_BAD_CALLS[name]
    with pytest.raises(ValueError, match=pattern):
        call()


def test_simcse_zero_vector_accepted_without_normalize():
    z1, z2 = _randn(4, 5, seed=12), _randn(4, 5, seed=13)
    z2[1] = 0.0
    loss = SimCSELoss(temperature=0.5, normalize=False)(torch.stack([z1, z2], dim=1))
    ref.assert_rel(loss, ref.simcse_batch(z1, z2, temperature=0.5, normalize=False))


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: SupConLoss()(FEAT.tolist(), LABELS), id="supcon"),
        pytest.param(lambda: DSCLLoss()(FEAT.tolist(), LABELS), id="dscl"),
        pytest.param(lambda: SimCSELoss()(Z.tolist()), id="simcse"),
    ],
)
def test_features_not_a_tensor(call):
    """checks.as_compute_dtype has a ValueError for this, but forward reads ``features.device`` first.

    Fails today with AttributeError: 'list' object has no attribute 'device'.
    """
    with pytest.raises(ValueError, match=r"must be a torch\.Tensor, got list"):
        call()


@pytest.mark.parametrize("scale", [1e20, 1e-25])
def test_normalize_is_scale_invariant_in_float32(scale):
    """Cosine similarity does not depend on the scale of a (finite, nonzero) feature vector.

    Fails today: normalize_rows uses ``torch.linalg.vector_norm`` of the raw fp32 rows, whose sum of
    squares overflows to inf for |x| ~ 1e20 (rows / inf = 0: every embedding becomes the zero vector
    and the loss silently becomes log(NV - 1)), and underflows to 0 for |x| ~ 1e-25 (a "zero vector"
    ValueError for a nonzero vector). Scaling each row by its max-abs before the norm avoids both.
    """
    features = _randn(4, 2, 8, seed=14, dtype=torch.float32)
    expected = SupConLoss()(features, LABELS)
    torch.testing.assert_close(SupConLoss()(features * scale, LABELS), expected, rtol=1e-5, atol=0)


# --------------------------------------------------------------------------------------------------
# half precision and autocast

HALF = [pytest.param(torch.bfloat16, 1e-2, id="bf16"), pytest.param(torch.float16, 1e-3, id="fp16")]


def _half_case(name: str, chunk_size):
    g = torch.Generator().manual_seed(15)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    features = torch.randn(6, 2, 16, generator=g)
    if name == "simcse":
        z = tuple(torch.randn(6, 16, generator=g) for _ in range(3))
        loss_fn = SimCSELoss(hard_negative_weight=0.5, chunk_size=chunk_size)
        return z, lambda z1, z2, z3: loss_fn(torch.stack([z1, z2], dim=1), hard_negatives=z3)
    loss_fn = {
        "supcon_out": SupConLoss(variant="out", chunk_size=chunk_size),
        "supcon_in": SupConLoss(variant="in", chunk_size=chunk_size),
        "dscl": DSCLLoss(alpha=0.2, chunk_size=chunk_size),
    }[name]
    return (features,), lambda f: loss_fn(f, labels)


@pytest.mark.parametrize("chunk_size", [None, 4])
@pytest.mark.parametrize("name", ["supcon_out", "supcon_in", "dscl", "simcse"])
@pytest.mark.parametrize(("dtype", "rel"), HALF)
def test_half_precision_inputs(dtype, rel, name, chunk_size):
    inputs, call = _half_case(name, chunk_size)
    fp32 = call(*inputs)
    halves = tuple(x.to(dtype).requires_grad_() for x in inputs)
    loss = call(*halves)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss.detach(), fp32, rtol=rel, atol=0)
    # computed in fp32 on the upcast inputs, not in half precision
    torch.testing.assert_close(loss.detach(), call(*(h.detach().float() for h in halves)), rtol=1e-6, atol=0)
    loss.backward()
    for h in halves:
        assert h.grad is not None and h.grad.dtype == dtype and bool(torch.isfinite(h.grad).all())


@pytest.mark.parametrize("name", ["supcon_out", "supcon_in", "dscl", "simcse"])
def test_loss_is_fp32_under_autocast(name):
    inputs, call = _half_case(name, None)
    expected = call(*inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = call(*inputs)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


def _counts(stats: LossStats) -> tuple[int, int]:
    return stats.num_anchors, stats.num_valid_anchors


# --------------------------------------------------------------------------------------------------
# the collapsed value: coincident features give exactly scale * log |A(a)|, which last_stats reports


@pytest.mark.parametrize(
    ("make", "call", "contrast_size"),
    [
        (lambda: SupConLoss(temperature=0.1), lambda fn, f, y, m: fn(f, y), 4 * 2 - 1),
        (
            lambda: SupConLoss(temperature=0.1, variant="in"),
            lambda fn, f, y, m: fn(f, y, memory=m, memory_labels=y[:3]),
            4 * 2 - 1 + 3,
        ),
        (lambda: SupConLoss(temperature=0.1, base_temperature=0.07), lambda fn, f, y, m: fn(f, y), 7),
        (lambda: DSCLLoss(temperature=0.2, alpha=0.3), lambda fn, f, y, m: fn(f, y, memory=m, memory_labels=y[:3]), 10),
        (lambda: SimCSELoss(), lambda fn, f, y, m: fn(f, hard_negatives=f[:, 0]), 8),
    ],
)
def test_collapsed_loss_is_log_contrast_size(make, call, contrast_size):
    point = torch.randn(6, dtype=torch.float64)
    features = point.expand(4, 2, 6).clone()
    labels = torch.tensor([0, 1, 0, 1])
    memory = point.expand(3, 6).clone()
    loss_fn = make()
    loss = call(loss_fn, features, labels, memory)
    expected = loss_fn.scale * math.log(contrast_size)
    assert loss_fn.last_stats.contrast_size == contrast_size
    assert math.isclose(loss_fn.last_stats.similarity_span, loss_fn.scale * 2 / loss_fn.temperature)
    assert math.isclose(loss_fn.last_stats.collapsed_loss, expected, rel_tol=1e-12)
    assert math.isclose(float(loss), expected, rel_tol=1e-9)


# --------------------------------------------------------------------------------------------------
# the floor: log(|P(a)| + |N(a)| e^(-2/tau)), reached by two classes at opposite poles (docs/design.md §7)


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_two_antipodal_classes_sit_exactly_on_the_floor(variant, temperature):
    """Samples 0, 1 at +e1 and 2, 3 at -e1, one view, plus a memory of one +e1 and two -e1 entries.

    Anchor 0: |A| = 3 + 3 = 6 entries, P = {1, memory 0} (cosine 1), N = {2, 3, memory 1, 2} (cosine -1), so
    L_out = L_in = log(2 e^(1/tau) + 4 e^(-1/tau)) - 1/tau = log(2 + 4 e^(-2/tau)). Anchors 2, 3: P = {the
    other, memory 1, 2}, N = 3 entries: log(3 + 3 e^(-2/tau)).
    """
    e1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    features = torch.stack([e1, e1, -e1, -e1])
    labels = torch.tensor([0, 0, 1, 1])
    memory, memory_labels = torch.stack([e1, -e1, -e1]), torch.tensor([0, 1, 1])
    loss_fn = SupConLoss(temperature=temperature, variant=variant)
    loss = loss_fn(features, labels, memory=memory, memory_labels=memory_labels)
    decay = math.exp(-2 / temperature)
    expected = (2 * math.log(2 + 4 * decay) + 2 * math.log(3 + 3 * decay)) / 4
    assert math.isclose(float(loss), expected, rel_tol=1e-12)
    assert math.isclose(float(loss_fn.last_stats.floor_loss), expected, rel_tol=1e-12)


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("seed", range(5))
def test_floor_bounds_the_loss_from_below(variant, seed):
    """Random features, 3 classes, 2 views, a labelled memory, tau / base_tau = 2: floor <= loss <= ...,
    and the floor is scale · mean log(|P| + |N| e^(-2/tau)) with |P(a)| counted by hand."""
    features, memory = _randn(6, 2, 5, seed=seed), _randn(4, 5, seed=seed + 100)
    labels, memory_labels = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([1, 2, 0, 0])
    loss_fn = SupConLoss(temperature=0.2, base_temperature=0.1, variant=variant)
    loss = loss_fn(features, labels, memory=memory, memory_labels=memory_labels)
    view_labels = labels.repeat_interleave(2).tolist()
    contrast_labels = view_labels + memory_labels.tolist()
    per_anchor = []
    for a, label in enumerate(view_labels):
        positives = sum(1 for b, other in enumerate(contrast_labels) if b != a and other == label)
        negatives = len(contrast_labels) - 1 - positives
        per_anchor.append(math.log(positives + negatives * math.exp(-2 / 0.2)))
    expected_floor = 2.0 * sum(per_anchor) / len(per_anchor)
    assert math.isclose(float(loss_fn.last_stats.floor_loss), expected_floor, rel_tol=1e-12)
    assert expected_floor < float(loss) < loss_fn.last_stats.collapsed_loss + loss_fn.last_stats.similarity_span


def test_floor_is_defined_for_supcon_only():
    features, labels = _randn(4, 2, 3, seed=1), torch.tensor([0, 1, 0, 1])
    no_positive = SupConLoss()
    no_positive(_randn(2, 3, seed=2), torch.tensor([0, 1]))
    assert math.isnan(float(no_positive.last_stats.floor_loss))  # a NaN tensor: logged like any other step
    unnormalised, dscl = SupConLoss(normalize=False), DSCLLoss(alpha=0.2)
    unnormalised(features, labels), dscl(features, labels)
    assert all(isinstance(fn.last_stats.floor_loss, float) for fn in (unnormalised, dscl))
    # what phase 1 logs: the collapsed value always, the floor only where it is defined
    assert set(dscl.last_stats.bounds("scl_")) == {"scl_collapsed"}
    supcon = SupConLoss()
    supcon(features, labels)
    bounds = supcon.last_stats.bounds("in_batch_")
    assert bounds == {"in_batch_collapsed": math.log(7), "in_batch_floor": supcon.last_stats.floor_loss}


def test_loss_describes_itself_and_its_needs():
    assert SupConLoss(temperature=0.1, variant="in").hparams() == {
        "loss": "scpt.losses.SupConLoss",
        "loss_temperature": 0.1,
        "loss_base_temperature": 0.1,
        "loss_variant": "in",
        "loss_normalize": True,
    }
    assert DSCLLoss(alpha=0.25).hparams()["loss_alpha"] == 0.25
    assert SimCSELoss(hard_negative_weight=0.5).hparams() == {
        "loss": "scpt.losses.SimCSELoss",
        "loss_temperature": 0.05,
        "loss_hard_negative_weight": 0.5,
        "loss_normalize": True,
    }
    assert (SupConLoss.min_views, SupConLoss.uses_labels) == (1, True)
    assert (SimCSELoss.min_views, SimCSELoss.uses_labels) == (2, False)

    class MarginSupCon(SupConLoss):  # a user's subclass: its own setting is logged without registration
        def __init__(self, temperature: float = 0.07, margin: float = 0.2) -> None:
            super().__init__(temperature)
            self.margin = margin

    described = MarginSupCon(margin=0.3).hparams()
    assert described["loss_margin"] == 0.3 and described["loss"].endswith("MarginSupCon")


def test_simcse_collapsed_value_counts_the_hard_negative_weight():
    """Coincident features: 2N - 1 equal logits and the own hard negative's, w higher."""
    point = torch.randn(6, dtype=torch.float64)
    features = point.expand(4, 2, 6).clone()
    loss_fn = SimCSELoss(hard_negative_weight=1.0)
    loss = loss_fn(features, hard_negatives=features[:, 0], memory=point.expand(3, 6).clone())
    expected = math.log(4 + 4 - 1 + 3 + math.e)
    assert math.isclose(loss_fn.last_stats.collapsed_loss, expected, rel_tol=1e-12)
    assert math.isclose(float(loss), expected, rel_tol=1e-9)
