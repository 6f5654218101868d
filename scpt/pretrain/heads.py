"""The heads of phase 1 (docs/design.md §4): projection for the contrastive loss, the masked-aspect
prediction head, and the review-reconstruction decoder.

Both token-prediction heads score the vocabulary with the encoder's input embedding matrix E
(tied weights, as BERT's MLM head): ``logits = transform(h) · Eᵀ + b``. E is passed in at call time,
so the heads own no copy of it and a checkpoint holds it once (inside the encoder).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scpt.pretrain.masking import IGNORE_INDEX

ProjectionKind = Literal["linear", "mlp"]
ProjectionNorm = Literal["none", "batch"]


class ProjectionHead(nn.Module):
    """Sentence vector ``[B, H]`` -> contrastive feature ``[B, out_dim]`` (not normalised; the loss does it).

    ``"linear"``: one linear map (SCAPT). ``"mlp"``: Linear(H, H) -> ReLU -> Linear(H, out_dim) (SimCLR).
    ``norm="batch"`` ends with a BatchNorm1d without affine parameters: each output dimension is
    centred and scaled to unit variance over the batch (running statistics in eval mode), so the
    features cannot all coincide, the collapsed point of the contrastive loss (docs/design.md §7).
    """

    def __init__(
        self, hidden_size: int, out_dim: int = 256, kind: ProjectionKind = "linear", norm: ProjectionNorm = "none"
    ) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {out_dim}")
        if kind == "linear":
            self.net: nn.Module = nn.Linear(hidden_size, out_dim)
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, out_dim))
        else:
            raise ValueError(f"projection must be 'linear' or 'mlp', got {kind!r}")
        if norm not in ("none", "batch"):
            raise ValueError(f"projection_norm must be 'none' or 'batch', got {norm!r}")
        self.norm = nn.BatchNorm1d(out_dim, affine=False) if norm == "batch" else None

    def forward(self, sentence_vector: Tensor) -> Tensor:
        projected = self.net(sentence_vector)
        return projected if self.norm is None else self.norm(projected)


class MaskedTokenHead(nn.Module):
    """BERT's MLM head: ``LayerNorm(gelu(W h + c)) · Eᵀ + b`` at the given positions.

    Parameter names mirror ``BertForMaskedLM``'s ``cls.predictions`` so its weights load as they are
    (:func:`scpt.encoders.load_mlm_head_state`).
    """

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: Tensor, embedding_weight: Tensor) -> Tensor:
        """``hidden`` [M, H], ``embedding_weight`` E [vocab, H] -> logits [M, vocab]."""
        return F.linear(self.LayerNorm(F.gelu(self.dense(hidden))), embedding_weight, self.bias)


def teacher_forcing_pairs(
    corrupted_ids: Tensor, original_ids: Tensor, attention_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Decoder inputs and targets for review reconstruction.

    Position t of the decoder reads the corrupted token t and predicts the original token t + 1
    (inputs shifted right, the usual teacher forcing), so with a causal mask no position sees the
    token it predicts: ``[CLS] a [MASK] c [SEP]`` (original ``[CLS] a b c [SEP]``) gives inputs
    ``[CLS] a [MASK] c`` and targets ``a b c [SEP]``.

    Args:
        corrupted_ids, original_ids, attention_mask: ``[B, T]``.

    Returns:
        ``(decoder_input_ids [B, T-1], decoder_mask [B, T-1], targets [B, T-1])``; targets are
        :data:`IGNORE_INDEX` where the target position is padding.
    """
    decoder_input_ids = corrupted_ids[:, :-1]
    target_mask = attention_mask[:, 1:].bool()
    targets = original_ids[:, 1:].masked_fill(~target_mask, IGNORE_INDEX)
    return decoder_input_ids, attention_mask[:, :-1], targets


class ReviewDecoder(nn.Module):
    """Review reconstruction: a causal transformer (self-attention only, no cross-attention).

    Input at position t: ``E[x'_t] + P_t + s`` (tied word embedding of the corrupted token, a learned
    position embedding, and the sentence vector s added to every position); output: logits over the
    vocabulary via Eᵀ, for the next original token (see :func:`teacher_forcing_pairs`).

    Args:
        hidden_size: H, the encoder's width.
        vocab_size: the encoder's vocabulary.
        num_layers: decoder layers (SCAPT: 6 on BERT-base).
        num_heads: attention heads (H must be divisible by it).
        intermediate_size: feed-forward width.
        max_positions: longest input.
        dropout: dropout in the layers and on the inputs.
    """

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        num_layers: int = 6,
        num_heads: int = 12,
        intermediate_size: int | None = None,
        max_positions: int = 512,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"decoder_layers must be >= 1, got {num_layers}")
        self.position_embeddings = nn.Embedding(max_positions, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            dim_feedforward=intermediate_size or 4 * hidden_size,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            layer_norm_eps=layer_norm_eps,
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.output = MaskedTokenHead(hidden_size, vocab_size, layer_norm_eps)

    def hidden_states(
        self, decoder_input_ids: Tensor, decoder_mask: Tensor, sentence_vector: Tensor, word_embeddings: nn.Embedding
    ) -> Tensor:
        """``[B, T]`` ids and mask, ``[B, H]`` sentence vector -> ``[B, T, H]`` causal hidden states."""
        length = decoder_input_ids.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"decoder input has {length} positions, "
                f"more than max_positions={self.position_embeddings.num_embeddings}"
            )
        positions = torch.arange(length, device=decoder_input_ids.device)
        inputs = word_embeddings(decoder_input_ids) + self.position_embeddings(positions) + sentence_vector.unsqueeze(1)
        causal = torch.ones(length, length, dtype=torch.bool, device=inputs.device).triu(1)  # True: may not attend
        return self.layers(
            self.dropout(self.input_norm(inputs)),
            mask=causal,
            src_key_padding_mask=~decoder_mask.bool(),
            is_causal=True,
        )

    def forward(
        self,
        decoder_input_ids: Tensor,
        decoder_mask: Tensor,
        targets: Tensor,
        sentence_vector: Tensor,
        word_embeddings: nn.Embedding,
    ) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy over the target positions and their count.

        The vocabulary logits are formed only at positions with a target (padding rows are skipped:
        they are most of the cost, ``positions x vocab``).
        """
        hidden = self.hidden_states(decoder_input_ids, decoder_mask, sentence_vector, word_embeddings)  # [B, T, H]
        has_target = targets != IGNORE_INDEX  # [B, T]
        logits = self.output(hidden[has_target], word_embeddings.weight)  # [M, vocab]
        if logits.shape[0] == 0:  # no target at all: a zero that stays on the graph, not NaN
            return logits.sum() * 0.0, has_target.sum()
        return F.cross_entropy(logits, targets[has_target]), has_target.sum()


__all__ = [
    "MaskedTokenHead",
    "ProjectionHead",
    "ProjectionKind",
    "ProjectionNorm",
    "ReviewDecoder",
    "teacher_forcing_pairs",
]
