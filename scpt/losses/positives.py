"""Who is a positive of whom: the relation P between anchors and the contrast set.

A relation answers four questions without ever building an [A, M] matrix unless asked for a block:
how many positives each anchor has, the sum of its positives' embeddings (for the linear part of the
losses), whether an anchor's own column counts as its positive, and, for SupCon L_in, one row block
of the boolean relation at a time. The caller removes the anchor itself (b != a) using the last two.

Two relations cover every loss:

- :class:`SameLabel`: b is a positive of a iff they share a label. Supervised losses use class labels;
  unsupervised ones use sample ids as labels (views of one sample are each other's positives).
- :class:`SampleMask`: an explicit ``[S_a, S_c]`` boolean matrix over samples, expanded to views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class Positives(Protocol):
    """The relation "contrast entry b is a positive of anchor a", self-pairs included."""

    def counts(self) -> Tensor:
        """``[A]`` int64: number of contrast entries related to each anchor."""

    def embedding_sums(self, contrast: Tensor) -> Tensor:
        """``[A, D]``: sum of ``contrast[b]`` over the entries b related to each anchor."""

    def contains(self, columns: Tensor) -> Tensor:
        """``[A]`` bool: whether ``contrast[columns[a]]`` is related to anchor a (False where < 0)."""

    def block(self, start: int, stop: int) -> Tensor:
        """``[stop - start, M]`` bool: the relation for anchor rows ``start:stop``."""

    def subset(self, rows: Tensor) -> Positives:
        """The same relation restricted to the anchors ``rows`` (int64 indices)."""


@dataclass(frozen=True)
class SameLabel:
    """b is a positive of a iff ``label(a) == label(b)``.

    Labels are remapped to dense class ids ``0..K-1`` once, so sums and counts are segment
    reductions over K classes: O((A + M)·D), no pairwise matrix.

    Attributes:
        anchor_ids: ``[A]`` int64 dense class id of each anchor.
        contrast_ids: ``[M]`` int64 dense class id of each contrast entry.
        num_classes: K.
    """

    anchor_ids: Tensor
    contrast_ids: Tensor
    num_classes: int

    @classmethod
    def from_labels(cls, anchor_labels: Tensor, contrast_labels: Tensor) -> SameLabel:
        """Build from integer labels of any range: ``anchor_labels [A]``, ``contrast_labels [M]``."""
        classes, dense = torch.unique(torch.cat([anchor_labels, contrast_labels]), return_inverse=True)
        num_anchors = anchor_labels.shape[0]
        return cls(dense[:num_anchors], dense[num_anchors:], int(classes.numel()))

    def counts(self) -> Tensor:
        return torch.bincount(self.contrast_ids, minlength=self.num_classes)[self.anchor_ids]

    def embedding_sums(self, contrast: Tensor) -> Tensor:
        class_sums = contrast.new_zeros(self.num_classes, contrast.shape[1]).index_add(0, self.contrast_ids, contrast)
        return class_sums[self.anchor_ids]

    def contains(self, columns: Tensor) -> Tensor:
        return (columns >= 0) & (self.contrast_ids[columns.clamp(min=0)] == self.anchor_ids)

    def block(self, start: int, stop: int) -> Tensor:
        return self.anchor_ids[start:stop, None] == self.contrast_ids[None, :]

    def subset(self, rows: Tensor) -> SameLabel:
        return SameLabel(self.anchor_ids[rows], self.contrast_ids, self.num_classes)


@dataclass(frozen=True)
class SampleMask:
    """b is a positive of a iff ``mask[sample(a), sample(b)]``.

    Attributes:
        mask: ``[S_a, S_c]`` bool over samples; every view of contrast sample j is a positive of every
            view of anchor sample i where ``mask[i, j]``. The diagonal decides whether the other views
            of an anchor's own sample count.
        anchor_samples: ``[A]`` int64 in ``[0, S_a)``.
        contrast_samples: ``[M]`` int64 in ``[0, S_c)``.
    """

    mask: Tensor
    anchor_samples: Tensor
    contrast_samples: Tensor

    def _anchor_rows(self, dtype: torch.dtype) -> Tensor:
        return self.mask.index_select(0, self.anchor_samples).to(dtype)  # [A, S_c]

    def counts(self) -> Tensor:
        views_per_sample = torch.bincount(self.contrast_samples, minlength=self.mask.shape[1])
        # float64 matmul is exact for counts below 2**53
        return (self._anchor_rows(torch.float64) @ views_per_sample.to(torch.float64)).round().long()

    def embedding_sums(self, contrast: Tensor) -> Tensor:
        sample_sums = contrast.new_zeros(self.mask.shape[1], contrast.shape[1]).index_add(
            0, self.contrast_samples, contrast
        )
        return self._anchor_rows(contrast.dtype) @ sample_sums

    def contains(self, columns: Tensor) -> Tensor:
        column_samples = self.contrast_samples[columns.clamp(min=0)]
        return (columns >= 0) & self.mask[self.anchor_samples, column_samples]

    def block(self, start: int, stop: int) -> Tensor:
        return self.mask.index_select(0, self.anchor_samples[start:stop]).index_select(1, self.contrast_samples)

    def subset(self, rows: Tensor) -> SampleMask:
        return SampleMask(self.mask, self.anchor_samples[rows], self.contrast_samples)
