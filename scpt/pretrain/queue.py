"""A label-aware memory queue (MoCo, He et al. 2020; DSCL's "M"): contrast-only entries with labels.

The queue is a FIFO of the last ``size`` detached features with their labels. Its entries join every
anchor's contrast set A(a), and its positives P(a) where the labels match, but are never anchors
(docs/design.md §3). It starts empty and only filled slots are used: no random or zero initial entries.

The buffers are part of the module's state dict, so the queue is saved in checkpoints and restored
on resume.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LabelQueue(nn.Module):
    """FIFO of ``size`` features ``[D]`` with integer labels.

    Args:
        size: K, the most entries kept (> 0).
        dim: D, the feature size.

    Attributes (buffers):
        features: ``[K, D]`` storage; slot order is a ring, see :meth:`entries` for the FIFO view.
        labels: ``[K]`` int64.
        filled: number of valid slots (<= K).
        head: the next slot to overwrite.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        if dim < 1:
            raise ValueError(f"queue feature size must be >= 1, got {dim}")
        self.size = size
        self.register_buffer("features", torch.zeros(size, dim))
        self.register_buffer("labels", torch.zeros(size, dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("head", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.filled)

    @torch.no_grad()
    def enqueue(self, features: Tensor, labels: Tensor) -> None:
        """Add ``features`` [B, D] with ``labels`` [B], dropping the oldest entries beyond K.

        Rows are added in order; if B > K only the last K are kept.
        """
        if features.dim() != 2 or features.shape[1] != self.features.shape[1]:
            raise ValueError(
                f"queue: features must have shape [B, {self.features.shape[1]}], got {tuple(features.shape)}"
            )
        if labels.shape != features.shape[:1]:
            raise ValueError(f"queue: labels must have shape [{features.shape[0]}], got {tuple(labels.shape)}")
        features, labels = features.detach()[-self.size :], labels.detach()[-self.size :]
        count = features.shape[0]
        slots = (int(self.head) + torch.arange(count, device=self.features.device)) % self.size
        self.features[slots] = features.to(self.features.dtype)
        self.labels[slots] = labels.to(self.labels.dtype)
        self.head.fill_((int(self.head) + count) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + count))

    def entries(self) -> tuple[Tensor, Tensor]:
        """The filled entries, newest first: ``(features [F, D], labels [F])`` with F = len(self)."""
        filled = int(self.filled)
        newest_first = (int(self.head) - 1 - torch.arange(filled, device=self.features.device)) % self.size
        return self.features[newest_first], self.labels[newest_first]


__all__ = ["LabelQueue"]
