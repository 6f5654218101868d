"""Representation quality on held-out data: alignment and uniformity (Wang & Isola, ICML 2020).

For L2-normalised representations f(x):

    alignment  = E_{(x, y) positive} ||f(x) - f(y)||_2^alpha              (eq. 4, alpha = 2; lower is better)
    uniformity = log E_{x, y independent} exp(-t ||f(x) - f(y)||_2^2)      (eq. 5, t = 2; lower is better)

Here positives are pairs of distinct held-out examples with the same label (the supervised notion
of a positive that SupCon trains on), and the uniformity expectation runs over all pairs i < j, as
the authors' ``torch.pdist`` code does.

The collapse monitor adds (all on normalised representations):

    mean cosine    = mean_{i != j} z_i . z_j                      (1 when every point coincides)
    effective rank = exp(H(sigma / sum sigma)), sigma the singular values of the centred features
                     (Roy & Vetterli 2007; 1 when collapsed to a line or a point, D when isotropic)
    probe          = nearest-class-centroid and k-nearest-neighbour accuracy of held-out features
                     against a fixed labelled reference sample (cosine similarity); per class, its
                     recall (the per-class accuracy) and F1, for long-tailed label distributions
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from scpt.training.dashboards import class_name


def _pair_distances(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Squared distances of all pairs i < j of ``z`` [N, D], with their row and column indices."""
    rows, cols = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    norms = z.pow(2).sum(dim=1)  # [N]
    gram = z @ z.T  # [N, N]; O(N^2) memory instead of O(N^2 D) for explicit differences
    squared = (norms[rows] + norms[cols] - 2 * gram[rows, cols]).clamp(min=0)  # [N(N-1)/2]
    return squared, rows, cols


def alignment(z: Tensor, labels: Tensor, alpha: float = 2.0) -> Tensor:
    """Mean ``||z_i - z_j||^alpha`` over pairs i < j with ``labels[i] == labels[j]``; NaN if there are none.

    Args:
        z: ``[N, D]`` normalised representations.
        labels: ``[N]`` integer labels.
    """
    squared, rows, cols = _pair_distances(z)
    same = labels[rows] == labels[cols]
    if not bool(same.any()):
        return torch.tensor(float("nan"), dtype=z.dtype, device=z.device)
    return squared[same].pow(alpha / 2).mean()


def uniformity(z: Tensor, t: float = 2.0) -> Tensor:
    """``log mean_{i<j} exp(-t ||z_i - z_j||^2)`` for ``z`` [N, D] normalised (N >= 2)."""
    if z.shape[0] < 2:
        raise ValueError(f"uniformity needs at least 2 representations, got {z.shape[0]}")
    squared, _, _ = _pair_distances(z)
    return torch.logsumexp(-t * squared, dim=0) - torch.log(torch.tensor(float(squared.numel()), dtype=z.dtype))


def normalized(z: Tensor) -> Tensor:
    """Rows of ``z`` scaled to unit L2 norm."""
    return F.normalize(z, dim=-1)


def mean_cosine(z: Tensor) -> Tensor:
    """Mean cosine similarity over ordered pairs i != j of ``z`` [N, D] normalised (N >= 2).

    Uses ``||sum z||^2 = N + sum_{i != j} z_i . z_j``: O(N·D), no pairwise matrix.
    """
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"mean_cosine needs at least 2 representations, got {n}")
    total = z.sum(dim=0)
    return (total.dot(total) - z.pow(2).sum()) / (n * (n - 1))


def effective_rank(z: Tensor) -> Tensor:
    """``exp(entropy(sigma / sum sigma))`` of the singular values of ``z`` [N, D] centred on its mean.

    In [1, min(N, D)]: 1 for features on a line (or all equal, by convention), min(N, D) for a
    spectrum that is flat. Computed in float64.
    """
    centred = (z - z.mean(dim=0, keepdim=True)).double()
    sigma = torch.linalg.svdvals(centred)
    total = sigma.sum()
    if float(total) <= 1e-12 * max(1.0, float(z.abs().max())):
        return torch.ones((), dtype=z.dtype, device=z.device)
    p = sigma / total
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).to(z.dtype)


def centroid_probe_predictions(query: Tensor, reference: Tensor, reference_labels: Tensor) -> Tensor:
    """The label of each ``query`` row's most cosine-similar class centroid of ``reference``.

    Args:
        query: ``[Q, D]`` held-out features.
        reference: ``[R, D]`` labelled features (a fixed training sample); ``reference_labels`` ``[R]``.
    Returns:
        ``[Q]`` predicted labels. Centroids are means of the normalised reference rows per class,
        normalised again, so a class's size in ``reference`` does not tilt its centroid's vote.
    """
    classes = reference_labels.unique()
    centroids = torch.stack([normalized(reference[reference_labels == c]).mean(dim=0) for c in classes])  # [C, D]
    return classes[(normalized(query) @ normalized(centroids).T).argmax(dim=1)]


def centroid_probe_accuracy(query: Tensor, query_labels: Tensor, reference: Tensor, reference_labels: Tensor) -> Tensor:
    """Share of ``query`` rows [Q, D] (labels ``query_labels`` [Q]) whose nearest class centroid of ``reference``
    has their label (:func:`centroid_probe_predictions`)."""
    return (centroid_probe_predictions(query, reference, reference_labels) == query_labels).float().mean()


def knn_probe_predictions(query: Tensor, reference: Tensor, reference_labels: Tensor, k: int = 10) -> Tensor:
    """The majority label among each ``query`` row's [Q, D] ``k`` most cosine-similar ``reference`` rows [R, D].

    A tie goes to the class whose voters are closer in sum of similarities (so the vote is
    deterministic). ``k`` is capped at R. Returns ``[Q]`` predicted labels.
    """
    k = min(k, reference.shape[0])
    similarity = normalized(query) @ normalized(reference).T  # [Q, R]
    top_similarity, top_index = similarity.topk(k, dim=1)  # [Q, k]
    votes = reference_labels[top_index]  # [Q, k]
    num_classes = int(reference_labels.max()) + 1
    counts = torch.zeros(query.shape[0], num_classes, dtype=similarity.dtype, device=query.device)
    counts.scatter_add_(1, votes, torch.ones_like(top_similarity))
    weight = torch.zeros_like(counts).scatter_add_(1, votes, top_similarity)
    score = counts + weight / (2 * k + 1)  # similarity only breaks ties: |weight| <= k < (2k + 1) / 2
    return score.argmax(dim=1)


def knn_probe_accuracy(
    query: Tensor, query_labels: Tensor, reference: Tensor, reference_labels: Tensor, k: int = 10
) -> Tensor:
    """Share of ``query`` rows [Q, D] whose ``k`` most cosine-similar ``reference`` rows [R, D] vote for their
    label ``query_labels`` [Q] (:func:`knn_probe_predictions`)."""
    return (knn_probe_predictions(query, reference, reference_labels, k) == query_labels).float().mean()


class PerClassScores(NamedTuple):
    """Per-class scores of predicted labels; ``nan`` where a class has no example (recall) or is neither
    predicted nor present (F1)."""

    recall: Tensor  # [C] share of class c's examples predicted c: the per-class accuracy
    f1: Tensor  # [C] 2 TP / (2 TP + FP + FN)
    macro_f1: Tensor  # [] mean of ``f1`` over the classes present in the labels


def per_class_scores(predicted: Tensor, labels: Tensor, num_classes: int) -> PerClassScores:
    """Recall and F1 of each class 0..C-1 for ``predicted`` [N] against ``labels`` [N], and their macro-F1.

    The macro mean runs over the classes that occur in ``labels`` (a class absent from the held-out
    set has no F1 to average), as scikit-learn's ``f1_score(average="macro", labels=present)``.
    """
    classes = torch.arange(num_classes, device=labels.device)
    is_label = labels.unsqueeze(0) == classes.unsqueeze(1)  # [C, N]
    is_predicted = predicted.unsqueeze(0) == classes.unsqueeze(1)  # [C, N]
    true_positive = (is_label & is_predicted).sum(dim=1).double()
    support = is_label.sum(dim=1).double()
    predicted_count = is_predicted.sum(dim=1).double()
    nan = torch.full_like(support, float("nan"))
    recall = torch.where(support > 0, true_positive / support.clamp(min=1), nan)
    denominator = support + predicted_count
    f1 = torch.where(denominator > 0, 2 * true_positive / denominator.clamp(min=1), nan)
    macro_f1 = f1[support > 0].mean() if bool((support > 0).any()) else nan[0]
    return PerClassScores(recall.float(), f1.float(), macro_f1.float())


def per_class_probe_scores(
    query: Tensor,
    query_labels: Tensor,
    reference: Tensor,
    reference_labels: Tensor,
    k: int = 10,
    class_names: Sequence[str] = (),
) -> dict[str, Tensor]:
    """Both probes' macro-F1 and per-class recall and F1, for held-out ``query`` [Q, D] with ``query_labels`` [Q]
    against ``reference`` [R, D] with ``reference_labels`` [R].

    Returns:
        ``probe_<kind>_macro_f1``, ``probe_<kind>_recall/<class>`` and ``probe_<kind>_f1/<class>`` for ``kind`` in
        ``centroid``, ``knn``; a class is named by ``class_names`` (else its index) and left out when the
        held-out labels lack it.
    """
    num_classes = max(len(class_names), int(query_labels.max()) + 1, int(reference_labels.max()) + 1)
    predictions = {
        "centroid": centroid_probe_predictions(query, reference, reference_labels),
        "knn": knn_probe_predictions(query, reference, reference_labels, k),
    }
    scores: dict[str, Tensor] = {}
    for kind, predicted in predictions.items():
        per_class = per_class_scores(predicted, query_labels, num_classes)
        scores[f"probe_{kind}_macro_f1"] = per_class.macro_f1
        for c in range(num_classes):
            if not torch.isnan(per_class.recall[c]):
                name = class_name(c, class_names)
                scores[f"probe_{kind}_recall/{name}"] = per_class.recall[c]
                scores[f"probe_{kind}_f1/{name}"] = per_class.f1[c]
    return scores


__all__ = [
    "PerClassScores",
    "alignment",
    "centroid_probe_accuracy",
    "centroid_probe_predictions",
    "effective_rank",
    "knn_probe_accuracy",
    "knn_probe_predictions",
    "mean_cosine",
    "normalized",
    "per_class_probe_scores",
    "per_class_scores",
    "uniformity",
]
