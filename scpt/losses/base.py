"""What the contrastive losses share: hyperparameter checks, input preparation, the reduction, stats."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from scpt.losses.checks import (
    check_chunk_size,
    check_features,
    check_memory_labels,
    check_positive,
    normalize_rows,
)


class AnchorLosses(NamedTuple):
    """Per-anchor losses of one batch.

    Attributes:
        losses: ``[K]`` the loss of each anchor that has at least one positive, in anchor order.
        valid: ``[A]`` bool, which anchors have a positive (``valid.sum() == K``).
        positive_counts: ``[K]`` |P(a)| of those anchors, for losses whose floor follows from it
            (SupCon; :meth:`ContrastiveLoss.record`); ``None`` otherwise.
    """

    losses: Tensor
    valid: Tensor
    positive_counts: Tensor | None = None


@dataclass(frozen=True)
class LossStats:
    """What the last call saw, for logging.

    Attributes:
        num_anchors: anchors in the batch (N·V for SupCon/DSCL, N for SimCSE).
        num_valid_anchors: anchors with at least one positive; only these enter the mean.
        contrast_size: |A(a)|, the entries each anchor is contrasted with (N·V - 1 + K for SupCon and
            DSCL with K memory entries; the candidates for SimCSE).
        collapsed_loss: the loss when every feature coincides, ``scale · log |A(a)|`` (SimCSE with a
            hard-negative weight w: ``log(|A(a)| - 1 + e^w)``): a collapsed representation sits exactly
            there, and the gradient vanishes (docs/design.md §7).
        similarity_span: ``scale · 2 / tau``, how far similarities can move the loss (cosines lie in
            [-1, 1]); the yardstick for "close to the collapsed value" at any temperature. NaN without
            normalisation.
        floor_loss: the lowest value the loss can take on this batch's label structure (SupCon L_out
            and L_in with normalised features): ``scale · mean_a log(|P(a)| + |N(a)| e^(-2/tau))``,
            every positive at cosine 1 and every negative at -1 (docs/design.md §7). It is reached
            with two classes; with a memory queue it is far above 0 (about log |P(a)|), so
            ``(collapsed - loss) / (collapsed - floor)`` says how far a run has come. A 0-dim tensor
            (no device sync); the float NaN for other losses (DSCL's unequal positive weights can go
            below it) and without normalisation.
    """

    num_anchors: int
    num_valid_anchors: int
    contrast_size: int = 0
    collapsed_loss: float = float("nan")
    similarity_span: float = float("nan")
    floor_loss: Tensor | float = float("nan")

    @property
    def valid_fraction(self) -> float:
        return self.num_valid_anchors / self.num_anchors if self.num_anchors else 0.0

    def bounds(self, prefix: str = "") -> dict[str, Tensor | float]:
        """The loss's bounds for logging: ``{prefix}collapsed`` and, where defined (a tensor),
        ``{prefix}floor``."""
        bounds: dict[str, Tensor | float] = {f"{prefix}collapsed": self.collapsed_loss}
        if isinstance(self.floor_loss, Tensor):
            bounds[f"{prefix}floor"] = self.floor_loss
        return bounds


def mean_over_valid(anchor_losses: AnchorLosses, scale: float, graph_source: Tensor) -> Tensor:
    """``scale * mean`` of the valid anchors' losses (docs/design.md §2, "batch loss").

    With no valid anchor the result is an exact 0 that stays on the autograd graph of ``graph_source``
    (its gradient is 0), so a training step can call ``backward()`` on it unconditionally.
    """
    if anchor_losses.losses.numel() == 0:
        # x * 0 elementwise stays 0 for any finite x (a sum first could overflow to inf, and inf * 0 is
        # NaN); adding to +0.0 turns a -0.0 sum into +0.0.
        return graph_source.new_zeros(()) + (graph_source * 0.0).sum()
    return anchor_losses.losses.mean() * scale


class ContrastiveLoss(nn.Module):
    """Base of every contrastive loss: one calling convention, its settings, its stats.

    Every subclass is called the same way::

        loss(features, labels=None, *, memory=None, memory_labels=None, **extras)

    - ``features``: ``[N, V, D]`` (V views per sample) or ``[N, D]`` (one view).
    - ``labels``: ``[N]`` integer classes (ignored by losses whose :attr:`uses_labels` is False).
    - ``memory`` ``[K, D]`` and ``memory_labels`` ``[K]``: contrast-only entries, e.g. a memory queue
      (docs/design.md §3): they join every anchor's contrast set A(a), and its positives P(a) where
      the labels match, but are never anchors and receive no gradient.
    - ``**extras``: what a loss needs beyond that (SimCSE: ``hard_negatives``; scpt's losses:
      ``anchor_samples``, see :attr:`accepts_anchor_samples`).

    Class attributes say what a loss needs, so a training loop never asks for a class by name:
    :attr:`min_views` (views per sample the loss needs), :attr:`uses_labels`. :meth:`hparams`
    describes the loss as flat, logger-friendly keys. After every call :attr:`last_stats` holds a
    :class:`LossStats`.
    """

    #: Views per sample the loss needs (SimCSE contrasts two dropout views: 2).
    min_views: ClassVar[int] = 1
    #: Whether the loss reads ``labels`` (supervised) or ignores them.
    uses_labels: ClassVar[bool] = True
    #: Whether ``forward`` takes ``anchor_samples=slice(start, stop)``: only those samples' views are
    #: anchors, the others stay in the contrast set *with* their gradient (features gathered from other
    #: processes; docs/design.md §3). A loss without it is computed on all anchors on every process.
    accepts_anchor_samples: ClassVar[bool] = False

    def __init__(
        self, temperature: float, base_temperature: float | None, normalize: bool, chunk_size: int | None
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.temperature = check_positive(owner, "temperature", temperature)
        self.base_temperature = (
            self.temperature
            if base_temperature is None
            else check_positive(owner, "base_temperature", base_temperature)
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

    def anchor_range(self, anchor_samples: slice | None, num_samples: int) -> tuple[int, int]:
        """``(start, stop)`` of the anchor samples: all N by default, else the slice ``anchor_samples``
        (contiguous, step 1, inside ``[0, N]``)."""
        if anchor_samples is None:
            return 0, num_samples
        owner = type(self).__name__
        if not isinstance(anchor_samples, slice) or anchor_samples.step not in (None, 1):
            raise ValueError(f"{owner}: anchor_samples must be a slice(start, stop) of samples, got {anchor_samples!r}")
        start = 0 if anchor_samples.start is None else anchor_samples.start
        stop = num_samples if anchor_samples.stop is None else anchor_samples.stop
        if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop <= num_samples):
            raise ValueError(
                f"{owner}: anchor_samples {anchor_samples!r} must select at least one of the {num_samples} samples"
            )
        return start, stop

    def record(self, anchor_losses: AnchorLosses, contrast_size: int, collapsed: float | None = None) -> None:
        """Keep :class:`LossStats` of this call; ``contrast_size`` is |A(a)|; ``collapsed`` defaults to
        ``scale · log |A(a)|``; the floor comes from ``anchor_losses.positive_counts`` when given."""
        if collapsed is None:
            collapsed = self.scale * math.log(contrast_size) if contrast_size > 0 else float("nan")
        span = self.scale * 2.0 / self.temperature if self.normalize else float("nan")
        floor: Tensor | float = float("nan")
        counts = anchor_losses.positive_counts
        if counts is not None and self.normalize:  # a tensor on every call (the same logged keys on every process)
            with torch.no_grad():
                positives = counts.to(anchor_losses.losses.dtype)  # the loss's dtype (no float64 on e.g. MPS)
                per_anchor = torch.log(positives + (contrast_size - positives) * math.exp(-2.0 / self.temperature))
                floor = self.scale * per_anchor.mean() if per_anchor.numel() else per_anchor.new_tensor(math.nan)
        self.last_stats = LossStats(
            int(anchor_losses.valid.numel()), int(anchor_losses.losses.numel()), contrast_size, collapsed, span, floor
        )

    def prepare_memory(
        self, memory: Tensor | None, memory_labels: Tensor | None, like: Tensor, needs_labels: bool
    ) -> tuple[Tensor | None, Tensor | None]:
        """Check contrast-only entries ``memory`` [K, D] (and ``memory_labels`` [K]) against ``like`` [M, D].

        Returns them in ``like``'s dtype and device, normalised if the loss normalises, detached;
        ``(None, None)`` when ``memory`` is ``None`` or empty.
        """
        owner = type(self).__name__
        if memory is None:
            if memory_labels is not None:
                raise ValueError(f"{owner}: memory_labels given without memory")
            return None, None
        if not isinstance(memory, Tensor) or memory.dim() != 2 or memory.shape[1] != like.shape[1]:
            shape = tuple(memory.shape) if isinstance(memory, Tensor) else type(memory).__name__
            raise ValueError(f"{owner}: memory must have shape [K, D] with D = {like.shape[1]}, got {shape}")
        if needs_labels:
            if memory_labels is None:
                raise ValueError(f"{owner}: memory needs memory_labels [K] when the batch has labels")
            memory_labels = check_memory_labels(owner, memory_labels, memory.shape[0]).to(like.device)
        if memory.shape[0] == 0:
            return None, None
        memory = memory.detach().to(device=like.device, dtype=like.dtype)
        if self.normalize:
            memory = normalize_rows(owner, "memory", memory)
        return memory, memory_labels

    def hparams(self) -> dict[str, Any]:
        """Flat description for loggers: ``{"loss": class path, "loss_<setting>": value, ...}``.

        Every constructor argument that the instance keeps as an attribute of the same name is
        included, so a new loss's own settings are logged without a list to maintain.
        """
        cls = type(self)
        module = cls.__module__
        package = "scpt.losses" if module.startswith("scpt.losses.") else module  # public path of scpt's losses
        described: dict[str, Any] = {"loss": f"{package}.{cls.__qualname__}"}
        for name in inspect.signature(cls.__init__).parameters:
            value = getattr(self, name, None) if name != "self" else None
            if isinstance(value, (bool, int, float, str)):
                described[f"loss_{name}"] = value
        return described

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
