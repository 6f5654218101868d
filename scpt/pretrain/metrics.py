"""Representation quality on held-out data: alignment and uniformity (Wang & Isola, ICML 2020).

For L2-normalised representations f(x):

    alignment  = E_{(x, y) positive} ||f(x) - f(y)||_2^alpha              (eq. 4, alpha = 2; lower is better)
    uniformity = log E_{x, y independent} exp(-t ||f(x) - f(y)||_2^2)      (eq. 5, t = 2; lower is better)

Here positives are pairs of distinct held-out examples with the same label (the supervised notion
of a positive that SupCon trains on), and the uniformity expectation runs over all pairs i < j, as
the authors' ``torch.pdist`` code does.
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


__all__ = ["alignment", "normalized", "uniformity"]
