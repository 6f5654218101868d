"""Plain-Python float64 reference implementations of the contrastive losses (docs/design.md §2).

Written directly from the equations in docs/design.md §2, with explicit loops and Python floats, and
deliberately sharing nothing with ``scpt.losses`` (no torch, no class sums, no chunking):

    s_ab      = z_a . z_b / tau                      (z L2-normalised unless normalize=False)
    A(a)      = every contrast entry b != a
    P(a)      = the b in A(a) that are positives of a (same label / same sample / mask)
    log p_ab  = s_ab - logsumexp_{c in A(a)} s_ac
    L_out(a)  = -(1/|P(a)|) sum_{p in P(a)} log p_ap
    L_in(a)   = -log( (1/|P(a)|) sum_{p in P(a)} p_ap )
    DSCL(a)   = -[ alpha mean_{O(a)} log p_ap + (1 - alpha) mean_{C(a)} log p_ap ]
                (O(a) = other views of a's own sample, C(a) = same class, other samples;
                 all weight to C(a) if O(a) is empty, all to O(a) if C(a) is empty)
    batch     = (tau / base_tau) * mean over anchors with |P(a)| > 0   (0.0 if there is none)
    SimCSE(i) = cross-entropy, target i, over [cos(z1_i, z2_j)/tau]_j ; [cos(z1_i, z3_j)/tau + w [j = i]]_j

Per-anchor functions return a list with one entry per anchor: the loss, or ``None`` for an anchor
without positives. Inputs may be torch tensors or nested lists; they are converted to Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Vector = list[float]
# positive(a, b) -> bool: is contrast entry b a positive of anchor a (self-pairs may say True; the
# reference removes b = a itself through ``self_columns``)
PositiveFn = Callable[[int, int], bool]


# ---------------------------------------------------------------------------------------------------
# helpers


def to_floats(x) -> list:
    """Nested Python floats (float64) from a tensor or nested sequence."""
    if hasattr(x, "detach"):
        x = x.detach().double().cpu().tolist()
    if isinstance(x, (list, tuple)):
        return [to_floats(v) for v in x]
    return float(x)


def to_ints(x) -> list[int]:
    if hasattr(x, "detach"):
        x = x.detach().cpu().tolist()
    return [int(v) for v in x]


def dot(u: Sequence[float], v: Sequence[float]) -> float:
    return math.fsum(a * b for a, b in zip(u, v, strict=True))


def l2_normalize(u: Sequence[float]) -> Vector:
    norm = math.sqrt(math.fsum(a * a for a in u))
    return [a / norm for a in u]


def logsumexp(values: Sequence[float]) -> float:
    m = max(values)
    if m == -math.inf:
        return -math.inf
    return m + math.log(math.fsum(math.exp(v - m) for v in values))


def flatten_views(features) -> tuple[list[Vector], int, int]:
    """``[N, V, D]`` or ``[N, D]`` -> list of N*V vectors, sample-major (row i*V + v = view v of i)."""
    f = to_floats(features)
    if not isinstance(f[0][0], list):  # [N, D]
        f = [[row] for row in f]
    n, v = len(f), len(f[0])
    return [f[i][j] for i in range(n) for j in range(v)], n, v


# ---------------------------------------------------------------------------------------------------
# positive relations


def positives_from_labels(anchor_labels, contrast_labels) -> PositiveFn:
    al, cl = to_ints(anchor_labels), to_ints(contrast_labels)
    return lambda a, b: al[a] == cl[b]


def positives_from_sample_mask(mask, anchor_samples, contrast_samples) -> PositiveFn:
    m = [[bool(x) for x in row] for row in to_floats(mask)]
    sa, sc = to_ints(anchor_samples), to_ints(contrast_samples)
    return lambda a, b: m[sa[a]][sc[b]]


# ---------------------------------------------------------------------------------------------------
# SupCon


def supcon_anchor_losses(
    anchors,
    contrast,
    positive: PositiveFn,
    self_columns: Sequence[int | None] | None,
    temperature: float,
    variant: str = "out",
) -> list[float | None]:
    """Per-anchor L_out / L_in of anchors against a contrast set (no normalisation here).

    ``self_columns[a]`` is the column of anchor a in the contrast set (removed from A(a)), or None / -1.
    """
    za, zc = to_floats(anchors), to_floats(contrast)
    out: list[float | None] = []
    for a, h in enumerate(za):
        own = None if self_columns is None else self_columns[a]
        own = None if own is None or own < 0 else own
        all_b = [b for b in range(len(zc)) if b != own]
        pos_b = [b for b in all_b if positive(a, b)]
        if not pos_b:
            out.append(None)
            continue
        s = {b: dot(h, zc[b]) / temperature for b in all_b}
        lse = logsumexp([s[b] for b in all_b])
        log_p = {b: s[b] - lse for b in pos_b}
        if variant == "out":
            out.append(-math.fsum(log_p.values()) / len(pos_b))
        elif variant == "in":
            mean_p = math.fsum(math.exp(v) for v in log_p.values()) / len(pos_b)
            out.append(-math.log(mean_p))
        else:
            raise ValueError(variant)
    return out


def batch_mean(per_anchor: Sequence[float | None], temperature: float, base_temperature: float | None) -> float:
    valid = [x for x in per_anchor if x is not None]
    if not valid:
        return 0.0
    base = temperature if base_temperature is None else base_temperature
    return (temperature / base) * math.fsum(valid) / len(valid)


def supcon_batch_anchor_losses(
    features, labels=None, mask=None, temperature=0.07, variant="out", normalize=True
) -> list[float | None]:
    """Per-anchor SupCon losses of a batch ``[N, V, D]`` / ``[N, D]``, anchors in sample-major order."""
    z, n, v = flatten_views(features)
    if normalize:
        z = [l2_normalize(r) for r in z]
    sample = [i for i in range(n) for _ in range(v)]
    if mask is not None:
        positive = positives_from_sample_mask(mask, sample, sample)
    elif labels is not None:
        lab = to_ints(labels)
        view_labels = [lab[i] for i in sample]
        positive = positives_from_labels(view_labels, view_labels)
    else:
        positive = positives_from_labels(sample, sample)
    return supcon_anchor_losses(z, z, positive, list(range(n * v)), temperature, variant)


def supcon_batch(
    features, labels=None, mask=None, temperature=0.07, base_temperature=None, variant="out", normalize=True
) -> float:
    per = supcon_batch_anchor_losses(features, labels, mask, temperature, variant, normalize)
    return batch_mean(per, temperature, base_temperature)


# ---------------------------------------------------------------------------------------------------
# DSCL


def dscl_anchor_losses(
    anchors,
    contrast,
    anchor_labels,
    contrast_labels,
    anchor_samples,
    contrast_samples,
    self_columns: Sequence[int | None] | None,
    temperature: float,
    alpha: float,
) -> list[float | None]:
    """Per-anchor DSCL: O(a) = same sample (b != a), C(a) = same class, other sample."""
    za, zc = to_floats(anchors), to_floats(contrast)
    al, cl = to_ints(anchor_labels), to_ints(contrast_labels)
    sa, sc = to_ints(anchor_samples), to_ints(contrast_samples)
    out: list[float | None] = []
    for a, h in enumerate(za):
        own = None if self_columns is None else self_columns[a]
        own = None if own is None or own < 0 else own
        all_b = [b for b in range(len(zc)) if b != own]
        o_set = [b for b in all_b if sc[b] == sa[a]]
        c_set = [b for b in all_b if sc[b] != sa[a] and cl[b] == al[a]]
        if not o_set and not c_set:
            out.append(None)
            continue
        s = {b: dot(h, zc[b]) / temperature for b in all_b}
        lse = logsumexp([s[b] for b in all_b])
        mean_o = math.fsum(s[b] - lse for b in o_set) / len(o_set) if o_set else 0.0
        mean_c = math.fsum(s[b] - lse for b in c_set) / len(c_set) if c_set else 0.0
        if not c_set:
            w_o, w_c = 1.0, 0.0
        elif not o_set:
            w_o, w_c = 0.0, 1.0
        else:
            w_o, w_c = alpha, 1.0 - alpha
        out.append(-(w_o * mean_o + w_c * mean_c))
    return out


def dscl_batch_anchor_losses(features, labels, temperature=0.07, alpha=0.1, normalize=True) -> list[float | None]:
    z, n, v = flatten_views(features)
    if normalize:
        z = [l2_normalize(r) for r in z]
    sample = [i for i in range(n) for _ in range(v)]
    lab = to_ints(labels)
    view_labels = [lab[i] for i in sample]
    return dscl_anchor_losses(z, z, view_labels, view_labels, sample, sample, list(range(n * v)), temperature, alpha)


def dscl_batch(features, labels, temperature=0.07, base_temperature=None, alpha=0.1, normalize=True) -> float:
    per = dscl_batch_anchor_losses(features, labels, temperature, alpha, normalize)
    return batch_mean(per, temperature, base_temperature)


# ---------------------------------------------------------------------------------------------------
# SimCSE


def simcse_anchor_losses(z1, z2, z3=None, temperature=0.05, hard_negative_weight=0.0, normalize=True) -> list[float]:
    a, c = to_floats(z1), to_floats(z2)
    h = to_floats(z3) if z3 is not None else None
    if normalize:
        a = [l2_normalize(r) for r in a]
        c = [l2_normalize(r) for r in c]
        h = [l2_normalize(r) for r in h] if h is not None else None
    out = []
    for i, zi in enumerate(a):
        logits = [dot(zi, zj) / temperature for zj in c]
        if h is not None:
            logits += [dot(zi, zj) / temperature + (hard_negative_weight if j == i else 0.0) for j, zj in enumerate(h)]
        out.append(logsumexp(logits) - logits[i])
    return out


def simcse_batch(z1, z2, z3=None, temperature=0.05, hard_negative_weight=0.0, normalize=True) -> float:
    per = simcse_anchor_losses(z1, z2, z3, temperature, hard_negative_weight, normalize)
    return math.fsum(per) / len(per)


# ---------------------------------------------------------------------------------------------------
# closed-form anchor gradient (docs/design.md §2), dot-product similarity, anchor as a free vector


def supcon_anchor_gradient(
    anchor, contrast, positive_columns: Sequence[int], removed_column: int | None, temperature: float, variant: str
) -> Vector:
    """dL_i/dh_i = (1/tau)[ sum_{p in P} h_p (P_ip - X_ip) + sum_{n in N} h_n P_in ].

    P_ib = softmax over A(i) of s_ib; X_ip = 1/|P| (out) or softmax over P(i) (in).
    """
    h, zc = to_floats(anchor), to_floats(contrast)
    all_b = [b for b in range(len(zc)) if b != removed_column]
    pos = [b for b in all_b if b in set(positive_columns)]
    neg = [b for b in all_b if b not in set(positive_columns)]
    s = {b: dot(h, zc[b]) / temperature for b in all_b}
    lse_all = logsumexp([s[b] for b in all_b])
    p_ib = {b: math.exp(s[b] - lse_all) for b in all_b}
    if variant == "out":
        x_ip = {b: 1.0 / len(pos) for b in pos}
    else:
        lse_pos = logsumexp([s[b] for b in pos])
        x_ip = {b: math.exp(s[b] - lse_pos) for b in pos}
    grad = []
    for d in range(len(h)):
        terms = [zc[p][d] * (p_ib[p] - x_ip[p]) for p in pos] + [zc[n][d] * p_ib[n] for n in neg]
        grad.append(math.fsum(terms) / temperature)
    return grad


# ---------------------------------------------------------------------------------------------------
# comparison


def assert_rel(actual, expected, rel: float = 1e-10, abs_: float = 1e-12, what: str = "") -> None:
    """``actual`` (tensor/float or sequence) equals ``expected`` to ``rel`` relative (``abs_`` near 0)."""
    if isinstance(expected, (list, tuple)):
        act = to_floats(actual)
        assert len(act) == len(expected), f"{what}: length {len(act)} != {len(expected)}"
        for k, (x, y) in enumerate(zip(act, expected)):
            assert math.isclose(x, y, rel_tol=rel, abs_tol=abs_), f"{what}[{k}]: {x!r} != reference {y!r}"
        return
    x = to_floats(actual)
    assert math.isclose(x, expected, rel_tol=rel, abs_tol=abs_), f"{what}: {x!r} != reference {expected!r}"
