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
                     against a fixed labelled reference sample (cosine similarity)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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


def centroid_probe_accuracy(query: Tensor, query_labels: Tensor, reference: Tensor, reference_labels: Tensor) -> Tensor:
    """Share of ``query`` rows whose most cosine-similar class centroid of ``reference`` has their label.

    Args:
        query: ``[Q, D]`` held-out features; ``query_labels`` ``[Q]``.
        reference: ``[R, D]`` labelled features (a fixed training sample); ``reference_labels`` ``[R]``.
    Centroids are means of the normalised reference rows per class, normalised again.
    """
    classes = reference_labels.unique()
    centroids = torch.stack([normalized(reference[reference_labels == c]).mean(dim=0) for c in classes])  # [C, D]
    predicted = classes[(normalized(query) @ normalized(centroids).T).argmax(dim=1)]
    return (predicted == query_labels).float().mean()


def knn_probe_accuracy(
    query: Tensor, query_labels: Tensor, reference: Tensor, reference_labels: Tensor, k: int = 10
) -> Tensor:
    """Share of ``query`` rows [Q, D] whose ``k`` most cosine-similar ``reference`` rows [R, D] vote for their label.

    Majority vote; a tie goes to the class whose voters are closer in sum of similarities (so the
    vote is deterministic). ``k`` is capped at R.
    """
    k = min(k, reference.shape[0])
    similarity = normalized(query) @ normalized(reference).T  # [Q, R]
    top_similarity, top_index = similarity.topk(k, dim=1)  # [Q, k]
    votes = reference_labels[top_index]  # [Q, k]
    num_classes = int(max(int(reference_labels.max()), int(query_labels.max()))) + 1
    counts = torch.zeros(query.shape[0], num_classes, dtype=similarity.dtype, device=query.device)
    counts.scatter_add_(1, votes, torch.ones_like(top_similarity))
    weight = torch.zeros_like(counts).scatter_add_(1, votes, top_similarity)
    score = counts + weight / (2 * k + 1)  # similarity only breaks ties: |weight| <= k < (2k + 1) / 2
    return (score.argmax(dim=1) == query_labels).float().mean()


__all__ = [
    "alignment",
    "centroid_probe_accuracy",
    "effective_rank",
    "knn_probe_accuracy",
    "mean_cosine",
    "normalized",
    "uniformity",
]
