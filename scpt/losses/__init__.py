"""Contrastive losses as pure PyTorch modules (no Lightning): docs/design.md §2.

Every module takes embeddings and labels the same way and records :class:`LossStats` after each call.
The ``*_anchor_losses`` functions are the general core: anchors against a contrast set that may hold
entries which are never anchors (a memory queue, embeddings from other processes).
"""

from scpt.losses.base import AnchorLosses, ContrastiveLoss, LossStats, mean_over_valid
from scpt.losses.dscl import DSCLLoss, dscl_anchor_losses
from scpt.losses.logsumexp import ColumnOffset, similarity_logsumexp
from scpt.losses.positives import Positives, SameLabel, SampleMask
from scpt.losses.simcse import SimCSELoss, simcse_anchor_losses
from scpt.losses.supcon import SupConLoss, supcon_anchor_losses

__all__ = [
    "AnchorLosses",
    "ColumnOffset",
    "ContrastiveLoss",
    "DSCLLoss",
    "LossStats",
    "Positives",
    "SameLabel",
    "SampleMask",
    "SimCSELoss",
    "SupConLoss",
    "dscl_anchor_losses",
    "mean_over_valid",
    "similarity_logsumexp",
    "simcse_anchor_losses",
    "supcon_anchor_losses",
]
