"""Long-tailed subsets of a labelled corpus, for studying losses under class imbalance.

The profile is the exponential one of the long-tail literature (Cui et al., CVPR 2019, "Class-Balanced
Loss Based on Effective Number of Samples"; Cao et al., NeurIPS 2019, LDAM): with C classes ordered
from head to tail and imbalance ratio r = n_head / n_tail, class i (0-based) keeps

    n_i = round(n_0 · r^(-i / (C - 1)))                                                         (1)

examples, drawn uniformly without replacement. n_0 is the largest head size that every class can
supply, n_0 = min_i count_i · r^(i / (C - 1)), so that the ratios are exact and no example repeats.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch


def long_tail_sizes(counts: Sequence[int], ratio: float) -> list[int]:
    """Eq. (1): how many examples each class keeps, for ``counts`` [C] given in head-to-tail order.

    Args:
        counts: available examples per class, head first.
        ratio: r = n_head / n_tail, at least 1 (1: balanced, every class at the smallest count).
    Returns:
        ``[C]`` kept sizes, each at least 1 and at most the class's count.
    Raises:
        ValueError: ``ratio < 1``, fewer than 2 classes, or a class without examples.
    """
    if not ratio >= 1:
        raise ValueError(f"imbalance ratio must be >= 1 (n_head / n_tail), got {ratio}")
    if len(counts) < 2:
        raise ValueError(f"a long tail needs at least 2 classes, got {len(counts)}")
    if min(counts) < 1:
        raise ValueError(f"every class needs examples to subsample from, got counts {list(counts)}")
    last = len(counts) - 1
    head = min(count * ratio ** (i / last) for i, count in enumerate(counts))
    return [max(1, min(count, round(head * ratio ** (-i / last)))) for i, count in enumerate(counts)]


def long_tailed_subset(
    labels: Sequence[int], ratio: float, order: Sequence[int] | None = None, seed: int = 0
) -> list[int]:
    """Indices of a long-tailed subset of examples with ``labels`` [N] (eq. 1), in their original order.

    Args:
        labels: class index of each example.
        ratio: r = n_head / n_tail.
        order: the classes from head to tail (``None``: by decreasing frequency, ties by class index).
            Classes left out of ``order`` are dropped.
        seed: the draw within each class.
    """
    counts = Counter(labels)
    if order is None:
        order = sorted(counts, key=lambda c: (-counts[c], c))
    missing = [c for c in order if c not in counts]
    if missing:
        raise ValueError(f"long-tail order names classes without examples: {missing}")
    sizes = long_tail_sizes([counts[c] for c in order], ratio)
    generator = torch.Generator().manual_seed(seed)
    kept: list[int] = []
    for c, size in zip(order, sizes):
        members = [i for i, label in enumerate(labels) if label == c]
        draw = torch.randperm(len(members), generator=generator)[:size]
        kept += [members[j] for j in draw.tolist()]
    return sorted(kept)


__all__ = ["long_tail_sizes", "long_tailed_subset"]
