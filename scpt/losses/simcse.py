"""SimCSE: in-batch contrastive loss over sentence pairs (Gao et al., EMNLP 2021; DESIGN.md §2).

For anchors z1_i and candidates z2_j (and hard negatives z3_j when given), with cos/tau logits,

    loss_i = -log softmax_i( [cos(z1_i, z2_j)/tau]_j ; [cos(z1_i, z3_j)/tau + w·[j = i]]_j )
           = lse_i - cos(z1_i, z2_i)/tau

where w, the hard-negative weight, is added to the logit of z3_i only (a log-space weight).
Unsupervised SimCSE passes two dropout passes of the same sentences as z1, z2; supervised SimCSE
passes (premise, entailment, contradiction) triples.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scpt.losses.base import AnchorLosses, LossStats, autocast_off
from scpt.losses.checks import (
    as_compute_dtype,
    check_chunk_size,
    check_finite,
    check_positive,
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
) -> AnchorLosses:
    """Per-anchor SimCSE losses (cross-entropy with target i).

    Args:
        anchors: ``[N, D]`` z1 (normalised already for cosine similarity).
        candidates: ``[N, D]`` z2; ``candidates[i]`` is the positive of ``anchors[i]``.
        hard_negatives: ``[N, D]`` z3 or ``None``.
        temperature: tau.
        hard_negative_weight: w, added to logit (i, z3_i).
        chunk_size: see :func:`~scpt.losses.logsumexp.similarity_logsumexp`.

    Returns:
        :class:`AnchorLosses`; every anchor has its positive, so all N are valid.
    """
    num = anchors.shape[0]
    contrast = candidates if hard_negatives is None else torch.cat([candidates, hard_negatives])  # [N or 2N, D]
    offsets = []
    if hard_negatives is not None and hard_negative_weight != 0.0:
        offsets.append(ColumnOffset(torch.arange(num, 2 * num, device=anchors.device), hard_negative_weight))
    scaled = anchors / temperature
    lse_all, _ = similarity_logsumexp(scaled, contrast, offsets, chunk_size=chunk_size)
    positive_logit = (scaled * candidates).sum(dim=1)
    return AnchorLosses(lse_all - positive_logit, torch.ones(num, dtype=torch.bool, device=anchors.device))


class SimCSELoss(nn.Module):
    """SimCSE contrastive loss, unsupervised (dropout views) or supervised (with hard negatives).

    Args:
        temperature: tau > 0 (SimCSE's default 0.05).
        hard_negative_weight: w, added to the logit of each anchor's own hard negative (default 0).
        normalize: cosine similarity (True) or raw dot products.
        chunk_size: anchor rows per chunk; ``None`` chooses automatically.
    """

    def __init__(
        self,
        temperature: float = 0.05,
        hard_negative_weight: float = 0.0,
        normalize: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.temperature = check_positive(owner, "temperature", temperature)
        weight_ok = isinstance(hard_negative_weight, (int, float)) and not isinstance(hard_negative_weight, bool)
        if not weight_ok or hard_negative_weight != hard_negative_weight or abs(hard_negative_weight) == float("inf"):
            raise ValueError(f"{owner}: hard_negative_weight must be a finite number, got {hard_negative_weight!r}")
        self.hard_negative_weight = float(hard_negative_weight)
        self.normalize = bool(normalize)
        self.chunk_size = check_chunk_size(owner, chunk_size)
        self.last_stats: LossStats | None = None

    def _prepare(self, name: str, z: Tensor, shape: tuple[int, ...] | None) -> Tensor:
        owner = type(self).__name__
        z = as_compute_dtype(owner, name, z)
        if z.dim() != 2 or z.shape[0] == 0 or z.shape[1] == 0:
            raise ValueError(f"{owner}: {name} must have shape [N, D] with N, D >= 1, got {tuple(z.shape)}")
        if shape is not None and tuple(z.shape) != shape:
            raise ValueError(f"{owner}: {name} must have the shape of z1, {shape}, got {tuple(z.shape)}")
        check_finite(owner, name, z)
        return normalize_rows(owner, name, z) if self.normalize else z

    def forward(self, z1: Tensor, z2: Tensor, hard_negatives: Tensor | None = None) -> Tensor:
        """Mean loss over the N anchors: ``z1``, ``z2`` (and ``hard_negatives``) are ``[N, D]``."""
        with autocast_off(type(self).__name__, "z1", z1):
            z1 = self._prepare("z1", z1, None)
            z2 = self._prepare("z2", z2, tuple(z1.shape)).to(z1.dtype)
            if hard_negatives is not None:
                hard_negatives = self._prepare("hard_negatives", hard_negatives, tuple(z1.shape)).to(z1.dtype)
            anchor_losses = simcse_anchor_losses(
                z1, z2, hard_negatives, self.temperature, self.hard_negative_weight, self.chunk_size
            )
            self.last_stats = LossStats(z1.shape[0], z1.shape[0])
            return anchor_losses.losses.mean()

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, hard_negative_weight={self.hard_negative_weight}, "
            f"normalize={self.normalize}"
        )
