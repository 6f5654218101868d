"""DSCL: decoupled supervised contrastive loss (Xuan & Zhang, AAAI 2024; docs/design.md §2).

The positives of anchor a split into O(a), the other views of a's own sample, and C(a), same-class
entries of other samples. With log p_ab = s_ab - lse_A(a):

    DSCL(a) = -[ alpha · mean_{p in O(a)} log p_ap + (1 - alpha) · mean_{p in C(a)} log p_ap ]
            = lse_A(a) - [ alpha/|O(a)| · sum_{O(a)} s_ap + (1 - alpha)/|C(a)| · sum_{C(a)} s_ap ]

The weights sit outside the log and the denominator lse_A is unweighted, as in the authors' code
(their ``weighted_beta`` = (1 - alpha)/alpha; default 8, i.e. alpha = 1/9). If O(a) is empty all the
weight goes to C(a); if C(a) is empty, all to O(a). Both sums are linear in the embeddings, so only
lse_A touches the pairwise logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scpt.losses.base import (
    AnchorLosses,
    ContrastiveLoss,
    autocast_off,
    mean_over_valid,
)
from scpt.losses.checks import check_labels, check_unit_interval
from scpt.losses.logsumexp import ColumnOffset, similarity_logsumexp
from scpt.losses.positives import SameLabel
from scpt.losses.supcon import own_columns_removed


def dscl_anchor_losses(
    anchors: Tensor,
    contrast: Tensor,
    same_class: SameLabel,
    same_sample: SameLabel,
    self_columns: Tensor | None,
    temperature: float,
    alpha: float,
    chunk_size: int | None = None,
) -> AnchorLosses:
    """Per-anchor DSCL losses of anchors against a contrast set.

    Args:
        anchors: ``[A, D]`` anchor embeddings.
        contrast: ``[M, D]`` contrast-set embeddings (may include entries that are never anchors).
        same_class: class labels of anchors and contrast entries (P(a) = O(a) ∪ C(a)).
        same_sample: sample ids; views of one sample share an id and a class label. Contrast-only
            entries (a memory queue) need ids no anchor has.
        self_columns: ``[A]`` column of each anchor in ``contrast`` or -1; ``None`` if none is there.
        temperature: tau.
        alpha: weight of the own-sample positives O(a), in [0, 1].
        chunk_size: see :func:`~scpt.losses.logsumexp.similarity_logsumexp`.

    Returns:
        :class:`AnchorLosses` for the anchors with |O(a)| + |C(a)| > 0.
    """
    num_class, class_sums = own_columns_removed(same_class, contrast, self_columns)  # P(a)
    num_own, own_sums = own_columns_removed(same_sample, contrast, self_columns)  # O(a)
    num_other, other_sums = num_class - num_own, class_sums - own_sums  # C(a)
    valid = num_class > 0
    rows = valid.nonzero().squeeze(1)
    if rows.numel() == 0:
        return AnchorLosses(anchors.new_zeros(0), valid)

    num_own, num_other = num_own[rows], num_other[rows]
    has_own, has_other = num_own > 0, num_other > 0
    alpha_t = anchors.new_tensor(alpha)  # in the compute dtype, so fp64 stays exact
    own_weight = torch.where(has_other, alpha_t, 1.0) * has_own  # alpha, or 1 without C(a)
    other_weight = torch.where(has_own, 1.0 - alpha_t, 1.0) * has_other  # 1 - alpha, or 1 without O(a)
    target_sum = (own_weight / num_own.clamp(min=1))[:, None] * own_sums[rows] + (
        other_weight / num_other.clamp(min=1)
    )[:, None] * other_sums[rows]  # [K, D]: sum_b w_ab z_b

    scaled = anchors[rows] / temperature
    offsets = [] if self_columns is None else [ColumnOffset(self_columns[rows], float("-inf"))]
    lse_all, _ = similarity_logsumexp(scaled, contrast, offsets, chunk_size=chunk_size)
    return AnchorLosses(lse_all - (scaled * target_sum).sum(dim=1), valid)


class DSCLLoss(ContrastiveLoss):
    """Decoupled supervised contrastive loss (Xuan & Zhang, AAAI 2024; docs/design.md §2).

    Batch loss = (tau / base_tau) · mean over anchors with at least one positive; an exact 0 on the
    graph when none has one. With V = 2 and a balanced batch where every anchor has m same-class
    entries from other samples, ``alpha = 1/(m + 1)`` gives SupCon L_out exactly.

    Args:
        temperature: tau > 0.
        base_temperature: base_tau > 0; defaults to ``temperature``.
        alpha: weight of the other views of the anchor's own sample, in [0, 1] (the authors' default
            ``weighted_beta = 8`` is alpha = 1/9).
        normalize: L2-normalise each embedding first.
        chunk_size: anchor rows per chunk; ``None`` chooses automatically.
    """

    accepts_anchor_samples = True

    def __init__(
        self,
        temperature: float = 0.07,
        base_temperature: float | None = None,
        alpha: float = 0.1,
        normalize: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(temperature, base_temperature, normalize, chunk_size)
        self.alpha = check_unit_interval(type(self).__name__, "alpha", alpha)

    def forward(
        self,
        features: Tensor,
        labels: Tensor | None = None,
        *,
        memory: Tensor | None = None,
        memory_labels: Tensor | None = None,
        anchor_samples: slice | None = None,
    ) -> Tensor:
        """Loss of a batch.

        Args:
            features: ``[N, V, D]`` or ``[N, D]``.
            labels: ``[N]`` integer classes (required: DSCL is supervised).
            memory, memory_labels: ``[K, D]`` contrast-only entries and their ``[K]`` labels (DSCL's
                queue "M"): in every A(a), and in C(a) where the label matches; never in O(a).
            anchor_samples: ``slice(start, stop)``: only these samples' views are anchors (the mean runs
                over them); every sample stays in the contrast set with its gradient. Default: all.
        """
        owner = type(self).__name__
        if labels is None:
            raise ValueError(f"{owner}: labels are required (DSCL is supervised); got None")
        with autocast_off(owner, "features", features):
            z, num_samples, num_views = self.flat_views(features)
            memory, memory_labels = self.prepare_memory(memory, memory_labels, z, needs_labels=True)
            contrast = z if memory is None else torch.cat([z, memory])
            view_labels = check_labels(owner, labels, num_samples).to(z.device).repeat_interleave(num_views)
            sample_ids = torch.arange(num_samples, device=z.device).repeat_interleave(num_views)
            contrast_labels, contrast_ids = view_labels, sample_ids
            if memory is not None:
                contrast_labels = torch.cat([view_labels, memory_labels])
                contrast_ids = torch.cat([sample_ids, sample_ids.new_full((memory.shape[0],), -1)])  # no anchor's
            first, last = self.anchor_range(anchor_samples, num_samples)
            rows = slice(first * num_views, last * num_views)  # the anchors' rows of z
            self_columns = torch.arange(rows.start, rows.stop, device=z.device)
            anchor_losses = dscl_anchor_losses(
                z[rows],
                contrast,
                SameLabel.from_labels(view_labels[rows], contrast_labels),
                SameLabel.from_labels(sample_ids[rows], contrast_ids),
                self_columns,
                self.temperature,
                self.alpha,
                self.chunk_size,
            )
            self.record(anchor_losses, contrast.shape[0] - 1)
            return mean_over_valid(anchor_losses, self.scale, z)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, {super().extra_repr()}"
