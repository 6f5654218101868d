"""Input checks shared by the losses. Each raises a ``ValueError`` that names the problem and the value."""

from __future__ import annotations

import math

import torch
from torch import Tensor

_HALF = (torch.float16, torch.bfloat16)


def check_positive(owner: str, name: str, value: float) -> float:
    """A finite number > 0 (temperatures)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_unit_interval(owner: str, name: str, value: float) -> float:
    """A number in [0, 1] (DSCL's alpha)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1], got {value!r}")
    return float(value)


def check_chunk_size(owner: str, value: int | None) -> int | None:
    """``None`` (automatic) or a positive number of anchor rows per chunk."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{owner}: chunk_size must be None (automatic) or an int >= 1, got {value!r}")
    return value


def as_compute_dtype(owner: str, name: str, x: Tensor) -> Tensor:
    """Floating features in the dtype the loss is computed in: half precision goes to fp32."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{owner}: {name} must be a floating-point tensor, got dtype {x.dtype}")
    return x.float() if x.dtype in _HALF else x


def check_finite(owner: str, name: str, x: Tensor) -> None:
    """No NaN or Inf; names the first offending element."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = tuple(int(i) for i in (~finite).nonzero()[0])
        raise ValueError(f"{owner}: {name} contains NaN or Inf, first at index {bad} (value {x[bad].item()})")


def normalize_rows(owner: str, name: str, rows: Tensor, row_names: str = "row") -> Tensor:
    """``rows / ||rows||`` along the last dim, refusing zero vectors (no epsilon that changes values).

    Each row is first divided by its largest absolute entry, so the norm neither overflows (entries
    ~1e20 in fp32) nor underflows (~1e-25) and the result is scale-invariant at any magnitude.
    """
    largest = rows.abs().amax(dim=-1, keepdim=True)
    zero = largest.squeeze(-1) == 0
    if bool(zero.any()):
        bad = tuple(int(i) for i in zero.nonzero()[0])
        raise ValueError(
            f"{owner}: {name} has a zero vector at {row_names} {bad if len(bad) > 1 else bad[0]}; "
            "it has no direction to normalize (pass normalize=False to use raw dot products)"
        )
    rescaled = rows / largest
    return rescaled / torch.linalg.vector_norm(rescaled, dim=-1, keepdim=True)


def check_features(owner: str, features: Tensor) -> Tensor:
    """Features ``[N, V, D]`` or ``[N, D]`` (one view) -> ``[N, V, D]`` in the compute dtype."""
    features = as_compute_dtype(owner, "features", features)
    if features.dim() == 2:
        features = features.unsqueeze(1)
    if features.dim() != 3:
        raise ValueError(
            f"{owner}: features must have shape [N, V, D] (V views) or [N, D], "
            f"got a {features.dim()}-d tensor of shape {tuple(features.shape)}"
        )
    if min(features.shape) == 0:
        raise ValueError(f"{owner}: features must not be empty, got shape {tuple(features.shape)}")
    check_finite(owner, "features", features)
    return features


def check_labels(
    owner: str, labels: Tensor, num_samples: int, name: str = "labels", size: str = "N", per: str = "sample"
) -> Tensor:
    """Integer labels ``[N]``, one per sample (``name``/``size``/``per`` word the error for other label sets)."""
    if not isinstance(labels, Tensor):
        raise ValueError(f"{owner}: {name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"{owner}: {name} must be an integer tensor, got dtype {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != num_samples:
        raise ValueError(
            f"{owner}: {name} must have shape [{size}] = [{num_samples}] (one per {per}), "
            f"got shape {tuple(labels.shape)}"
        )
    return labels.long()


def check_memory_labels(owner: str, labels: Tensor, num_entries: int) -> Tensor:
    """Integer labels ``[K]``, one per memory entry."""
    return check_labels(owner, labels, num_entries, name="memory_labels", size="K", per="memory entry")


def check_mask(owner: str, mask: Tensor, num_samples: int) -> Tensor:
    """A ``[N, N]`` positive mask over samples, bool or 0/1 -> bool."""
    if not isinstance(mask, Tensor):
        raise ValueError(f"{owner}: mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.shape != (num_samples, num_samples):
        raise ValueError(
            f"{owner}: mask must have shape [N, N] = [{num_samples}, {num_samples}], got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        binary = (mask == 0) | (mask == 1)
        if not bool(binary.all()):
            bad = tuple(int(i) for i in (~binary).nonzero()[0])
            raise ValueError(f"{owner}: mask must hold only 0 and 1 (or bool), got {mask[bad].item()} at {bad}")
        mask = mask != 0
    return mask
