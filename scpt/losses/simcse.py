"""SimCSE: in-batch contrastive loss over sentence pairs (Gao et al., EMNLP 2021; docs/design.md §2).

For anchors z1_i and candidates z2_j (and hard negatives z3_j when given), with cos/tau logits,

    loss_i = -log softmax_i( [cos(z1_i, z2_j)/tau]_j ; [cos(z1_i, z3_j)/tau + w·[j = i]]_j )
           = lse_i - cos(z1_i, z2_i)/tau

where w, the hard-negative weight, is added to the logit of z3_i only (a log-space weight).
Unsupervised SimCSE passes two dropout passes of the same sentences as z1, z2; supervised SimCSE
passes (premise, entailment, contradiction) triples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scpt.losses.base import AnchorLosses, ContrastiveLoss, autocast_off
from scpt.losses.checks import (
    as_compute_dtype,
    check_features,
    check_finite,
    normalize_rows,
)
from scpt.losses.logsumexp import ColumnOffset, similarity_logsumexp


def simcse_anchor_losses(
    anchors: Tensor,
    candidates: Tensor,
    hard_negatives: Tensor | None,
    temperature: float,
    hard_negative_weight: float = 0.0,
    chunk_size: int | None = None,
    memory: Tensor | None = None,
    first_anchor: int = 0,
) -> AnchorLosses:
    """Per-anchor SimCSE losses (cross-entropy with target i).

    Args:
        anchors: ``[A, D]`` z1 of samples ``first_anchor .. first_anchor + A - 1`` (normalised already
            for cosine similarity).
        candidates: ``[N, D]`` z2 of all samples; ``candidates[first_anchor + i]`` is the positive of
            ``anchors[i]``.
        hard_negatives: ``[N, D]`` z3 or ``None``.
        temperature: tau.
        hard_negative_weight: w, added to logit (i, z3_i).
        chunk_size: see :func:`~scpt.losses.logsumexp.similarity_logsumexp`.
        memory: ``[K, D]`` extra negatives appended to every anchor's candidates, or ``None``.
        first_anchor: the sample index of ``anchors[0]`` (anchors of one process among gathered candidates).

    Returns:
        :class:`AnchorLosses`; every anchor has its positive, so all A are valid.
    """
    num, num_anchors = candidates.shape[0], anchors.shape[0]
    own = torch.arange(first_anchor, first_anchor + num_anchors, device=anchors.device)  # [A] own sample
    contrast = candidates if hard_negatives is None else torch.cat([candidates, hard_negatives])  # [N or 2N, D]
    if memory is not None:
        contrast = torch.cat([contrast, memory])  # [.. + K, D]; the hard-negative columns keep their offsets
    offsets = []
    if hard_negatives is not None and hard_negative_weight != 0.0:
        offsets.append(ColumnOffset(num + own, hard_negative_weight))
    scaled = anchors / temperature
    lse_all, _ = similarity_logsumexp(scaled, contrast, offsets, chunk_size=chunk_size)
    positive_logit = (scaled * candidates[own]).sum(dim=1)
    return AnchorLosses(lse_all - positive_logit, torch.ones(num_anchors, dtype=torch.bool, device=anchors.device))


class SimCSELoss(ContrastiveLoss):
    """SimCSE contrastive loss, unsupervised (dropout views) or supervised (with hard negatives).

    Called like every scpt loss, ``loss(features, labels=None, *, hard_negatives=None, memory=None)``:
    views 0 and 1 of ``features`` ``[N, V >= 2, D]`` are z1 (anchors) and z2 (their positives);
    labels are ignored. ``memory`` ``[K, D]`` adds contrast-only negatives (a MoCo-style queue).

    Args:
        temperature: tau > 0 (SimCSE's default 0.05).
        hard_negative_weight: w, added to the logit of each anchor's own hard negative (default 0).
        normalize: cosine similarity (True) or raw dot products.
        chunk_size: anchor rows per chunk; ``None`` chooses automatically.
    """

    min_views = 2
    uses_labels = False
    accepts_anchor_samples = True

    def __init__(
        self,
        temperature: float = 0.05,
        hard_negative_weight: float = 0.0,
        normalize: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(temperature, None, normalize, chunk_size)
        owner = type(self).__name__
        weight_ok = isinstance(hard_negative_weight, (int, float)) and not isinstance(hard_negative_weight, bool)
        if not weight_ok or hard_negative_weight != hard_negative_weight or abs(hard_negative_weight) == float("inf"):
            raise ValueError(f"{owner}: hard_negative_weight must be a finite number, got {hard_negative_weight!r}")
        self.hard_negative_weight = float(hard_negative_weight)

    def _prepare(self, name: str, z: Tensor, shape: tuple[int, ...]) -> Tensor:
        owner = type(self).__name__
        z = as_compute_dtype(owner, name, z)
        if tuple(z.shape) != shape:
            raise ValueError(f"{owner}: {name} must have the shape of one view, {shape}, got {tuple(z.shape)}")
        check_finite(owner, name, z)
        return normalize_rows(owner, name, z) if self.normalize else z

    def forward(
        self,
        features: Tensor,
        labels: Tensor | None = None,
        *,
        hard_negatives: Tensor | None = None,
        memory: Tensor | None = None,
        memory_labels: Tensor | None = None,
        anchor_samples: slice | None = None,
    ) -> Tensor:
        """Mean loss over the N anchors (or the samples ``anchor_samples``).

        Args:
            features: ``[N, V >= 2, D]``; view 0 is z1, view 1 is z2 (further views are ignored).
            labels: ignored (SimCSE's positives are the paired views).
            hard_negatives: ``[N, D]`` z3, or ``None``.
            memory: ``[K, D]`` extra negatives for every anchor, or ``None``; ``memory_labels`` is ignored.
            anchor_samples: ``slice(start, stop)``: only these samples' z1 are anchors; the z2 (and z3) of
                every sample stay candidates with their gradient. Default: all.
        """
        owner = type(self).__name__
        if isinstance(labels, Tensor) and labels.is_floating_point():
            raise ValueError(
                f"{owner}: takes features [N, V >= 2, D] like every scpt loss, not (z1, z2); "
                "call loss(torch.stack([z1, z2], dim=1)) and pass hard negatives as hard_negatives="
            )
        with autocast_off(owner, "features", features):
            features = check_features(owner, features)
            if features.shape[1] < 2:
                raise ValueError(
                    f"{owner}: needs two views per sample, features [N, V >= 2, D]; got shape {tuple(features.shape)}"
                )
            z1 = normalize_rows(owner, "features", features[:, 0]) if self.normalize else features[:, 0]
            z2 = normalize_rows(owner, "features", features[:, 1]) if self.normalize else features[:, 1]
            if hard_negatives is not None:
                hard_negatives = self._prepare("hard_negatives", hard_negatives, tuple(z1.shape)).to(z1.dtype)
            memory, _ = self.prepare_memory(memory, None, z1, needs_labels=False)
            first, last = self.anchor_range(anchor_samples, z1.shape[0])
            anchor_losses = simcse_anchor_losses(
                z1[first:last],
                z2,
                hard_negatives,
                self.temperature,
                self.hard_negative_weight,
                self.chunk_size,
                memory,
                first_anchor=first,
            )
            candidates = z2.shape[0] * (1 if hard_negatives is None else 2) + (0 if memory is None else memory.shape[0])
            # all logits equal, except the weighted own hard negative's, which is w higher
            weighted = 0.0 if hard_negatives is None else self.hard_negative_weight
            collapsed = math.log(candidates - 1 + math.exp(weighted))
            self.record(anchor_losses, candidates, collapsed)
            return anchor_losses.losses.mean()

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, hard_negative_weight={self.hard_negative_weight}, "
            f"normalize={self.normalize}"
        )


__all__ = ["SimCSELoss", "simcse_anchor_losses"]
