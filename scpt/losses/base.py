"""What the contrastive losses share: hyperparameter checks, input preparation, the reduction, stats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from scpt.losses.checks import (
    check_chunk_size,
    check_features,
    check_positive,
    normalize_rows,
)


class AnchorLosses(NamedTuple):
    """Per-anchor losses of one batch.

    Attributes:
        losses: ``[K]`` the loss of each anchor that has at least one positive, in anchor order.
        valid: ``[A]`` bool, which anchors have a positive (``valid.sum() == K``).
    """

    losses: Tensor
    valid: Tensor


@dataclass(frozen=True)
class LossStats:
    """What the last call saw, for logging.

    Attributes:
        num_anchors: anchors in the batch (N·V for SupCon/DSCL, N for SimCSE).
        num_valid_anchors: anchors with at least one positive; only these enter the mean.
    """

    num_anchors: int
    num_valid_anchors: int

    @property
    def valid_fraction(self) -> float:
        return self.num_valid_anchors / self.num_anchors if self.num_anchors else 0.0


def mean_over_valid(anchor_losses: AnchorLosses, scale: float, graph_source: Tensor) -> Tensor:
    """``scale * mean`` of the valid anchors' losses (DESIGN.md §2, "batch loss").

    With no valid anchor the result is an exact 0 that stays on the autograd graph of ``graph_source``
    (its gradient is 0), so a training step can call ``backward()`` on it unconditionally.
    """
    if anchor_losses.losses.numel() == 0:
        # x * 0 elementwise stays 0 for any finite x (a sum first could overflow to inf, and inf * 0 is
        # NaN); adding to +0.0 turns a -0.0 sum into +0.0.
        return graph_source.new_zeros(()) + (graph_source * 0.0).sum()
    return anchor_losses.losses.mean() * scale


class ContrastiveLoss(nn.Module):
    """Base of the multi-view contrastive losses: temperature, base temperature, normalisation.

    After every call :attr:`last_stats` holds a :class:`LossStats` for logging.
    """

    def __init__(
        self, temperature: float, base_temperature: float | None, normalize: bool, chunk_size: int | None
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.temperature = check_positive(owner, "temperature", temperature)
        self.base_temperature = (
            self.temperature if base_temperature is None else check_positive(owner, "base_temperature", base_temperature)
        )
        self.normalize = bool(normalize)
        self.chunk_size = check_chunk_size(owner, chunk_size)
        self.last_stats: LossStats | None = None

    @property
    def scale(self) -> float:
        """The factor tau / base_tau in front of the mean (1 by default)."""
        return self.temperature / self.base_temperature

    def flat_views(self, features: Tensor) -> tuple[Tensor, int, int]:
        """Check ``features`` [N, V, D] or [N, D]; return ``(z [N·V, D], N, V)``, sample-major, normalised.

        Row ``i * V + v`` of ``z`` is view v of sample i. Half precision is upcast to fp32.
        """
        features = check_features(type(self).__name__, features)
        num_samples, num_views, dim = features.shape
        if self.normalize:
            features = normalize_rows(type(self).__name__, "features", features, row_names="[sample, view]")
        return features.reshape(num_samples * num_views, dim), num_samples, num_views

    def record(self, anchor_losses: AnchorLosses) -> None:
        self.last_stats = LossStats(int(anchor_losses.valid.numel()), int(anchor_losses.losses.numel()))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, base_temperature={self.base_temperature}, normalize={self.normalize}"


def autocast_off(owner: str, name: str, x: Tensor) -> torch.autocast:
    """A context that disables autocast on ``x``'s device, so the loss runs in fp32 (or fp64).

    Raises:
        ValueError: ``x`` is not a tensor (checked here because the device is read first).
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
    return torch.autocast(device_type=x.device.type, enabled=False)
