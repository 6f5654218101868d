"""SupCon: supervised contrastive loss, L_out and L_in (Khosla et al., NeurIPS 2020, eqs. 2 and 3).

With s_ab = z_a · z_b / tau, A(a) the contrast set without a, P(a) ⊆ A(a) the positives of a, and
lse_X(a) = log sum_{b in X} exp(s_ab):

    L_out(a) = -(1/|P(a)|) sum_{p in P(a)} log p_ap = lse_A(a) - (1/|P(a)|) sum_{p in P(a)} s_ap     (eq. 2)
    L_in(a)  = -log( (1/|P(a)|) sum_{p in P(a)} p_ap ) = lse_A(a) - lse_P(a) + log |P(a)|            (eq. 3)

The positive sum in L_out is linear: sum_p s_ap = z_a · (sum_p z_p) / tau, computed from per-class
embedding sums without any pairwise matrix. Only lse_A (and lse_P for L_in) walk the [A, M] logits,
in :func:`scpt.losses.logsumexp.similarity_logsumexp`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from scpt.losses.base import (
    AnchorLosses,
    ContrastiveLoss,
    autocast_off,
    mean_over_valid,
)
from scpt.losses.checks import check_labels, check_mask
from scpt.losses.logsumexp import ColumnOffset, similarity_logsumexp
from scpt.losses.positives import Positives, SameLabel, SampleMask

Variant = Literal["out", "in"]


def own_columns_removed(positives: Positives, contrast: Tensor, self_columns: Tensor | None) -> tuple[Tensor, Tensor]:
    """Positive counts and embedding sums with each anchor's own entry removed (b != a).

    Returns:
        ``(counts [A] int64, sums [A, D])`` over P(a).
    """
    counts, sums = positives.counts(), positives.embedding_sums(contrast)
    if self_columns is not None:
        own = positives.contains(self_columns)  # [A]
        counts = counts - own.long()
        sums = sums - torch.where(own[:, None], contrast[self_columns.clamp(min=0)], 0.0)
    return counts, sums


def supcon_anchor_losses(
    anchors: Tensor,
    contrast: Tensor,
    positives: Positives,
    self_columns: Tensor | None,
    temperature: float,
    variant: Variant = "out",
    chunk_size: int | None = None,
) -> AnchorLosses:
    """Per-anchor SupCon losses of anchors against a contrast set (eqs. 2 and 3).

    This is the general core: the contrast set may hold entries that are never anchors (a memory
    queue, embeddings gathered from other processes), and anchors need not be in it.

    Args:
        anchors: ``[A, D]`` anchor embeddings (normalised already if the loss normalises).
        contrast: ``[M, D]`` contrast-set embeddings.
        positives: the relation P over (anchor, contrast entry), self-pairs included.
        self_columns: ``[A]`` int64, the column of each anchor in ``contrast`` (-1 if absent); that
            entry is removed from A(a) and P(a). ``None``: no anchor is in the contrast set.
        temperature: tau.
        variant: ``"out"`` (eq. 2) or ``"in"`` (eq. 3).
        chunk_size: see :func:`~scpt.losses.logsumexp.similarity_logsumexp`.

    Returns:
        :class:`AnchorLosses` for the anchors with |P(a)| > 0, with their |P(a)|.
    """
    if variant not in ("out", "in"):
        raise ValueError(f"SupCon variant must be 'out' or 'in', got {variant!r}")
    counts, positive_sums = own_columns_removed(positives, contrast, self_columns)
    valid = counts > 0
    rows = valid.nonzero().squeeze(1)
    if rows.numel() == 0:
        return AnchorLosses(anchors.new_zeros(0), valid, counts[rows])

    scaled = anchors[rows] / temperature  # [K, D]; logits = scaled @ contrast.T
    offsets = [] if self_columns is None else [ColumnOffset(self_columns[rows], float("-inf"))]
    num_positives = counts[rows].to(anchors.dtype)
    if variant == "out":
        lse_all, _ = similarity_logsumexp(scaled, contrast, offsets, chunk_size=chunk_size)
        mean_positive_logit = (scaled * positive_sums[rows]).sum(dim=1) / num_positives
        return AnchorLosses(lse_all - mean_positive_logit, valid, counts[rows])
    lse_all, lse_pos = similarity_logsumexp(
        scaled, contrast, offsets, positive_block=positives.subset(rows).block, chunk_size=chunk_size
    )
    return AnchorLosses(lse_all - lse_pos + torch.log(num_positives), valid, counts[rows])


class SupConLoss(ContrastiveLoss):
    """Supervised contrastive loss, L_out or L_in (Khosla et al. 2020, eqs. 2, 3; docs/design.md §2).

    Batch loss = (tau / base_tau) · mean over anchors with at least one positive. Anchors without a
    positive are left out of the mean; if none has one the loss is an exact 0 on the autograd graph.
    ``last_stats`` says how many anchors counted.

    Positives of anchor (i, v) (view v of sample i) among the other N·V - 1 embeddings:
    ``labels``: same label; ``mask``: ``mask[i, j]`` for every view of sample j (the diagonal decides
    whether i's other views count); neither: the other views of sample i (unsupervised, needs V >= 2).

    Memory is O(chunk · N·V) above a few million logits (rows are chunked and recomputed in backward).
    The loss is computed in fp32 (fp64 inputs stay fp64) with autocast disabled.

    Args:
        temperature: tau > 0.
        base_temperature: base_tau > 0; defaults to ``temperature`` (factor 1).
        variant: ``"out"`` (eq. 2, the default) or ``"in"`` (eq. 3).
        normalize: L2-normalise each embedding first (cosine similarity).
        chunk_size: anchor rows per chunk; ``None`` chooses automatically.
    """

    accepts_anchor_samples = True

    def __init__(
        self,
        temperature: float = 0.07,
        base_temperature: float | None = None,
        variant: Variant = "out",
        normalize: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(temperature, base_temperature, normalize, chunk_size)
        if variant not in ("out", "in"):
            raise ValueError(f"SupConLoss: variant must be 'out' or 'in', got {variant!r}")
        self.variant: Variant = variant

    def forward(
        self,
        features: Tensor,
        labels: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        memory: Tensor | None = None,
        memory_labels: Tensor | None = None,
        anchor_samples: slice | None = None,
    ) -> Tensor:
        """Loss of a batch.

        Args:
            features: ``[N, V, D]`` (V views per sample) or ``[N, D]`` (one view).
            labels: ``[N]`` integer class labels, or
            mask: ``[N, N]`` bool (or 0/1): ``mask[i, j]`` makes sample j's views positives of sample i's.
            memory: ``[K, D]`` contrast-only entries (a memory queue): in every A(a); in P(a) where
                ``memory_labels`` equals a's label. Unsupervised (no labels), they are negatives only.
            memory_labels: ``[K]`` integer labels of ``memory`` (needed with ``labels``).
            anchor_samples: ``slice(start, stop)``: only these samples' views are anchors (the mean runs
                over them); every sample stays in the contrast set with its gradient. Default: all.

        Returns:
            Scalar loss (fp32, or fp64 for fp64 input).
        """
        owner = type(self).__name__
        if labels is not None and mask is not None:
            raise ValueError(f"{owner}: pass labels or mask, not both")
        with autocast_off(owner, "features", features):
            z, num_samples, num_views = self.flat_views(features)
            if mask is not None and memory is not None:
                raise ValueError(f"{owner}: a memory has no mask relation to the batch; use labels with memory")
            memory, memory_labels = self.prepare_memory(memory, memory_labels, z, needs_labels=labels is not None)
            contrast = z if memory is None else torch.cat([z, memory])  # [N·V (+ K), D]
            first, last = self.anchor_range(anchor_samples, num_samples)
            rows = slice(first * num_views, last * num_views)  # the anchors' rows of z
            sample_ids = torch.arange(num_samples, device=z.device).repeat_interleave(num_views)
            if mask is not None:
                mask = check_mask(owner, mask, num_samples).to(z.device)
                positives: Positives = SampleMask(mask, sample_ids[rows], sample_ids)
            elif labels is not None:
                view_labels = check_labels(owner, labels, num_samples).to(z.device).repeat_interleave(num_views)
                contrast_labels = view_labels if memory is None else torch.cat([view_labels, memory_labels])
                positives = SameLabel.from_labels(view_labels[rows], contrast_labels)
            elif num_views < 2:
                raise ValueError(
                    f"{owner}: with one view (features of shape {tuple(features.shape)}) there is no positive "
                    "unless labels or mask is given"
                )
            else:
                memory_ids = sample_ids.new_full((contrast.shape[0] - z.shape[0],), -1)  # no anchor's sample
                positives = SameLabel.from_labels(sample_ids[rows], torch.cat([sample_ids, memory_ids]))
            self_columns = torch.arange(rows.start, rows.stop, device=z.device)
            anchor_losses = supcon_anchor_losses(
                z[rows], contrast, positives, self_columns, self.temperature, self.variant, self.chunk_size
            )
            self.record(anchor_losses, contrast.shape[0] - 1)
            return mean_over_valid(anchor_losses, self.scale, z)

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, {super().extra_repr()}"


__all__ = ["SupConLoss", "supcon_anchor_losses", "own_columns_removed"]
