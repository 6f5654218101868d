"""Masked aspect prediction (MAP): SCAPT's aspect-first token masking (docs/design.md §4).

Per sequence, a budget of ``floor(p · M + 1/2)`` tokens is masked (at least one), where M counts the
*maskable* tokens (real sentence tokens: no special tokens, no padding) and p = 0.15:

1. aspect tokens first — if there are more than the budget, a random subset of them;
2. the rest of the budget from the other maskable tokens, uniformly at random.

Each selected token is then replaced by ``[MASK]`` with probability 0.8, by a random vocabulary
token with probability 0.1, and left unchanged with probability 0.1 (BERT's 80/10/10); the
prediction target is the original token at every selected position, whatever its replacement.

Selection is one vectorised top-k: every maskable token gets a random score, aspect tokens get 1
added, so sorting the scores puts the aspect tokens (in random order) before all others.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

#: Label value ignored by ``F.cross_entropy`` (positions that are not prediction targets).
IGNORE_INDEX = -100


class MaskedTokens(NamedTuple):
    """The output of :func:`aspect_first_mask`.

    Attributes:
        input_ids: ``[B, T]`` the corrupted ids fed to the encoder.
        labels: ``[B, T]`` the original id at selected positions, :data:`IGNORE_INDEX` elsewhere.
        selected: ``[B, T]`` bool, the positions chosen for prediction.
    """

    input_ids: Tensor
    labels: Tensor
    selected: Tensor


def mask_budget(num_maskable: Tensor, mask_probability: float) -> Tensor:
    """Tokens to mask per row: ``floor(p · M + 1/2)`` (halves round up), at least 1 where ``M >= 1``, 0 where
    ``M = 0``. ``[B]`` -> ``[B]``."""
    budget = torch.floor(num_maskable.to(torch.float64) * mask_probability + 0.5).to(torch.long)
    return torch.where(num_maskable > 0, budget.clamp(min=1), torch.zeros_like(budget))


def aspect_first_mask(
    input_ids: Tensor,
    maskable: Tensor,
    aspect: Tensor,
    mask_token_id: int,
    vocab_size: int,
    mask_probability: float = 0.15,
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
    generator: torch.Generator | None = None,
) -> MaskedTokens:
    """Choose and corrupt the MAP targets of a padded batch.

    Args:
        input_ids: ``[B, T]`` token ids.
        maskable: ``[B, T]`` bool, tokens that may be masked (real sentence tokens).
        aspect: ``[B, T]`` bool, aspect tokens, masked first (only where also ``maskable``).
        mask_token_id: the tokenizer's ``[MASK]`` id.
        vocab_size: random replacements are drawn from ``[0, vocab_size)``.
        mask_probability: p, the share of maskable tokens selected per row.
        mask_fraction, random_fraction: replacement probabilities (the rest stays unchanged).
        generator: source of randomness (default: torch's global generator, seeded by ``seed_everything``).

    Returns:
        :class:`MaskedTokens`.

    Raises:
        ValueError: shapes differ, or a probability is outside ``[0, 1]`` / the fractions sum above 1.
    """
    if maskable.shape != input_ids.shape or aspect.shape != input_ids.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)}, maskable {tuple(maskable.shape)} and aspect {tuple(aspect.shape)} "
            "must have the same [B, T] shape"
        )
    if not 0.0 < mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in (0, 1], got {mask_probability}")
    if not (
        mask_fraction >= 0.0 and random_fraction >= 0.0 and mask_fraction + random_fraction <= 1.0
    ):  # NaN fails too
        raise ValueError(
            f"mask_fraction {mask_fraction} and random_fraction {random_fraction} must be >= 0 with sum <= 1"
        )
    device = input_ids.device
    maskable = maskable.bool()
    priority = aspect.bool() & maskable

    scores = torch.rand(input_ids.shape, generator=generator, device=device) + priority.to(torch.float32)
    scores = scores.masked_fill(~maskable, -1.0)  # [B, T]: aspect tokens in (1, 2), others in (0, 1), unmaskable -1
    budget = mask_budget(maskable.sum(dim=1), mask_probability)  # [B]
    order = scores.argsort(dim=1, descending=True)  # [B, T]
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=device).expand_as(order))
    selected = rank < budget.unsqueeze(1)  # [B, T]

    draw = torch.rand(input_ids.shape, generator=generator, device=device)
    random_ids = torch.randint(0, vocab_size, input_ids.shape, generator=generator, device=device)
    corrupted = torch.where(selected & (draw < mask_fraction), torch.full_like(input_ids, mask_token_id), input_ids)
    use_random = selected & (draw >= mask_fraction) & (draw < mask_fraction + random_fraction)
    corrupted = torch.where(use_random, random_ids, corrupted)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return MaskedTokens(corrupted, labels, selected)


__all__ = ["IGNORE_INDEX", "MaskedTokens", "aspect_first_mask", "mask_budget"]
