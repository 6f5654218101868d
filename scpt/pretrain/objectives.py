"""The terms of the phase-1 objective, each a small module with its weight (docs/design.md §4).

    L = sum_k weight_k · L_k

Built in, with SCAPT's weights: :class:`ContrastiveObjective` (2, supervised contrastive on a
projection of the sentence vector), :class:`MaskedAspectObjective` (1, masked aspect prediction) and
:class:`ReconstructionObjective` (1, review reconstruction). All read one encoder pass, described by
an :class:`EncodedBatch`; an objective creates its parameters in :meth:`Objective.build`, once the
encoder is known, so a config can name an objective before any model exists.

Adding an objective is one subclass of :class:`Objective` plus a config entry under
``model.objectives`` (class path and init args); see CONTRIBUTING.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from scpt.encoders import is_checkpoint, load_mlm_head_state, resolve_encoder, sentence_vector
from scpt.losses import ContrastiveLoss, SupConLoss
from scpt.pretrain.heads import (
    MaskedTokenHead,
    ProjectionHead,
    ProjectionKind,
    ProjectionNorm,
    ReviewDecoder,
    teacher_forcing_pairs,
)
from scpt.pretrain.masking import MaskedTokens
from scpt.pretrain.queue import LabelQueue
from scpt.training.distributed import distributed_contrastive_loss, gather, global_mean

Pooling = Literal["cls", "mean"]


@dataclass
class EncodedBatch:
    """One encoder pass over a phase-1 batch, as every objective sees it.

    Attributes:
        batch: the collated batch (``input_ids`` [B, T] original ids, ``attention_mask``,
            ``token_type_ids``, ``labels`` [B], ``maskable``, ``aspect``).
        encoder_ids: ``[B, T]`` what the encoder read (the corrupted ids when masking is on).
        masked: the masking of this batch, or ``None`` when no objective needs it.
        hidden: ``[V·B, T, H]`` last hidden states, view-major (rows v·B .. v·B + B - 1 are view v);
            ``None`` where the batch was encoded in chunks (gradient caching): then only
            :meth:`Objective.combine` sees this batch, with the chunks' parts.
        num_views: V.
        encoder: the encoder (for its tied input embeddings).
        chunk_size: samples per encoder pass under gradient caching (``None``: the whole batch at once).

    Under DDP each process holds its own batch; an objective returns its process's share of the loss over
    all processes' batches (:mod:`scpt.training.distributed`), so that after DDP's gradient average one
    step equals single-process training on the concatenated batch.
    """

    batch: dict[str, Tensor]
    encoder_ids: Tensor
    masked: MaskedTokens | None
    hidden: Tensor | None
    num_views: int
    encoder: PreTrainedModel
    chunk_size: int | None = None

    @property
    def num_samples(self) -> int:
        return self.batch["input_ids"].shape[0]


class ObjectiveOutput(NamedTuple):
    """An objective's loss (a scalar on the graph) and what it logs besides (``train/<name>_<key>``)."""

    loss: Tensor
    metrics: dict[str, Tensor | float]


def merge_parts(chunks: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Join the parts of consecutive chunks: rows (``[b, ...]``) are concatenated, sums (0-d) added."""
    merged: dict[str, Tensor] = {}
    for key in chunks[0]:
        values = [chunk[key] for chunk in chunks]
        merged[key] = torch.stack(values).sum(dim=0) if values[0].dim() == 0 else torch.cat(values)
    return merged


class Objective(nn.Module):
    """One weighted term of the phase-1 objective.

    Subclasses set :attr:`name` (its log key), :attr:`needs_masking` (whether it reads the masked
    input), create parameters in :meth:`build` and compute their loss in :meth:`forward`.

    To work under gradient caching (``model.grad_cache_chunk``: the batch is encoded in chunks whose
    activations are recomputed in backward), an objective splits its loss in two instead:
    :meth:`partial` computes what it needs from one chunk of samples (rows ``[b, ...]`` such as
    features, or 0-d sums such as a token loss sum), and :meth:`combine` turns the merged parts of all
    chunks into the loss (``forward`` is then ``combine(partial(encoded), encoded)``). An objective
    that only overrides :meth:`forward` runs without gradient caching.

    Args:
        weight: the term's weight (>= 0). The module drops terms of weight 0 before :meth:`build`,
            so they hold no parameters and cost no compute.
    """

    name: ClassVar[str] = "objective"
    needs_masking: ClassVar[bool] = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"{type(self).__name__}: weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def build(self, encoder: PreTrainedModel, encoder_source: str) -> None:
        """Create parameters that depend on the encoder (its width, vocabulary, checkpoint)."""

    def forward(self, encoded: EncodedBatch) -> ObjectiveOutput:
        return self.combine(self.partial(encoded), encoded)

    def partial(self, encoded: EncodedBatch) -> dict[str, Tensor]:
        """This term's part of a chunk of samples: rows ``[b, ...]`` or 0-d sums (see :func:`merge_parts`)."""
        raise NotImplementedError(f"{type(self).__name__} implements forward() only, not partial()/combine()")

    def combine(self, parts: dict[str, Tensor], encoded: EncodedBatch) -> ObjectiveOutput:
        """The term's output from the merged parts of every chunk of ``encoded`` (whose ``hidden`` may be None)."""
        raise NotImplementedError(f"{type(self).__name__} implements forward() only, not partial()/combine()")

    @classmethod
    def splits_into_chunks(cls) -> bool:
        """Whether this objective implements :meth:`partial` and :meth:`combine` (gradient caching)."""
        return cls.partial is not Objective.partial and cls.combine is not Objective.combine

    def after_optimizer_step(self, encoder: PreTrainedModel) -> None:
        """Called after each optimiser step (e.g. to move a momentum encoder)."""

    def hparams(self) -> dict[str, Any]:
        """Flat settings for loggers: ``lambda_<name>`` (the weight) and the objective's own settings."""
        return {f"lambda_{self.name}": self.weight}


class ContrastiveObjective(Objective):
    """L_scl: a contrastive loss on ``projection(sentence vector)`` of V views (SCAPT: SupCon L_out,
    tau 0.07, a 256-d linear projection of h_CLS, one view).

    With ``queue_size > 0`` a :class:`~scpt.pretrain.queue.LabelQueue` of the last K features (and
    labels) joins the contrast set as contrast-only entries; with ``momentum > 0`` its keys come from
    an exponential moving average of the encoder and projection (MoCo: theta_k <- m·theta_k + (1 - m)·theta_q),
    otherwise from the features themselves, detached.

    Args:
        weight: lambda_scl.
        loss: any :class:`~scpt.losses.ContrastiveLoss`.
        projection_dim: output size of the projection.
        projection: ``"linear"`` (SCAPT) or ``"mlp"``.
        projection_norm: ``"none"`` or ``"batch"`` (batch-normalise the projection's outputs:
            centred, unit variance per dimension over the batch).
        pooling: sentence vector, ``"cls"`` (SCAPT) or ``"mean"`` over real tokens.
        queue_size: K (0: no queue).
        momentum: EMA momentum of the key encoder (0: no key encoder).
    """

    name = "scl"

    def __init__(
        self,
        weight: float = 2.0,
        loss: ContrastiveLoss | None = None,
        projection_dim: int = 256,
        projection: ProjectionKind = "linear",
        projection_norm: ProjectionNorm = "none",
        pooling: Pooling = "cls",
        queue_size: int = 0,
        momentum: float = 0.0,
    ) -> None:
        super().__init__(weight)
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if momentum > 0 and queue_size == 0:
            raise ValueError(f"momentum {momentum} needs a queue: its keys only fill the queue (set queue_size > 0)")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.loss = loss if loss is not None else SupConLoss(temperature=0.07)
        self.projection_dim, self.projection_kind, self.projection_norm = projection_dim, projection, projection_norm
        self.pooling: Pooling = pooling
        self.queue_size, self.momentum = queue_size, momentum
        self.projection: ProjectionHead | None = None
        self.queue: LabelQueue | None = None
        self.key_encoder: PreTrainedModel | None = None
        self.key_projection: ProjectionHead | None = None

    def build(self, encoder: PreTrainedModel, encoder_source: str) -> None:
        hidden_size = encoder.config.hidden_size
        self.projection = ProjectionHead(hidden_size, self.projection_dim, self.projection_kind, self.projection_norm)
        if self.queue_size:
            self.queue = LabelQueue(self.queue_size, self.projection_dim)
        if self.momentum > 0:
            self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
            self.key_projection = copy.deepcopy(self.projection).requires_grad_(False)

    def features(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """Projected (not normalised) features ``[rows, D]`` of hidden states ``[rows, T, H]``."""
        assert self.projection is not None, "build() first"
        return self.projection(sentence_vector(hidden, attention_mask, self.pooling))

    @torch.no_grad()
    def _keys(self, encoded: EncodedBatch, features: Tensor) -> Tensor:
        """Queue keys ``[B, D]`` for this batch: from the momentum encoder (view 0's input), or the
        features of view 0, detached."""
        if self.key_encoder is None:
            return features[:, 0].detach()
        batch = encoded.batch
        self.key_encoder.train(self.training)  # the same dropout regime as the query pass
        step = encoded.chunk_size or encoded.num_samples
        keys = []
        for start in range(0, encoded.num_samples, step):
            rows = slice(start, start + step)
            hidden = self.key_encoder(
                input_ids=encoded.encoder_ids[rows],
                attention_mask=batch["attention_mask"][rows],
                token_type_ids=batch["token_type_ids"][rows],
            ).last_hidden_state
            keys.append(self.key_projection(sentence_vector(hidden, batch["attention_mask"][rows], self.pooling)))
        return torch.cat(keys)

    def partial(self, encoded: EncodedBatch) -> dict[str, Tensor]:
        """``{"features": [b, V, D]}``, the projected features of the chunk's V views."""
        num_samples, num_views = encoded.num_samples, encoded.num_views
        mask = encoded.batch["attention_mask"].repeat(num_views, 1)
        features = self.features(encoded.hidden, mask).view(num_views, num_samples, -1).transpose(0, 1)  # [b, V, D]
        return {"features": features}

    def combine(self, parts: dict[str, Tensor], encoded: EncodedBatch) -> ObjectiveOutput:
        features = parts["features"]  # [B, V, D]
        labels = encoded.batch["labels"]
        memory = memory_labels = None
        if self.queue is not None and len(self.queue):
            memory, memory_labels = self.queue.entries()
        # local anchors against every process's features (gathered with gradients); identity on one process
        loss = distributed_contrastive_loss(self.loss, features, labels, memory=memory, memory_labels=memory_labels)
        stats = self.loss.last_stats
        metrics: dict[str, Tensor | float] = {}
        if stats is not None:
            metrics["valid_anchor_fraction"] = stats.valid_fraction
            metrics["span"] = stats.similarity_span
            metrics.update(stats.bounds())  # collapsed, and SupCon's floor
        if memory is not None:
            metrics.update(self._in_batch_metrics(features, labels))
        if self.queue is not None:
            metrics["queue_filled"] = float(len(self.queue))
            if self.training:
                keys = self._keys(encoded, features)
                self.queue.enqueue(gather(keys), gather(labels))  # every process's keys, in rank order
        return ObjectiveOutput(loss, metrics)

    @torch.no_grad()
    def _in_batch_metrics(self, features: Tensor, labels: Tensor | None) -> dict[str, Tensor | float]:
        """The loss of the batch alone, without the queue, beside its collapsed value (and SupCon's floor).

        ``features`` ``[B, V, D]``, ``labels`` ``[B]``: this process's batch, gathered here from every process
        (without gradients), so the values equal one process's on the concatenated batch. A diagnostic only:
        no gradient, no random numbers, and the training loss's ``last_stats`` are read before this call
        overwrites them.
        With a queue the logged loss and its collapsed value ``log|A(a)|`` grow with the queue; these stay
        on the batch's scale (``log(VB - 1)`` at most), the scale of a run without a queue.
        """
        in_batch = self.loss(gather(features.detach()), gather(labels) if labels is not None else None)
        stats = self.loss.last_stats
        return {"in_batch": in_batch, **(stats.bounds("in_batch_") if stats is not None else {})}

    @torch.no_grad()
    def after_optimizer_step(self, encoder: PreTrainedModel) -> None:
        if self.key_encoder is None:
            return
        m = self.momentum
        for key_part, part in ((self.key_encoder, encoder), (self.key_projection, self.projection)):
            for key_param, param in zip(key_part.parameters(), part.parameters()):
                key_param.mul_(m).add_(param.detach(), alpha=1.0 - m)

    def hparams(self) -> dict[str, Any]:
        return {
            **super().hparams(),
            **self.loss.hparams(),
            "projection_dim": self.projection_dim,
            "projection": self.projection_kind,
            "projection_norm": self.projection_norm,
            "pooling": self.pooling,
            "queue_size": self.queue_size,
            "momentum": self.momentum,
        }


class MaskedAspectObjective(Objective):
    """L_map: masked aspect prediction, BERT's MLM head tied to the input embeddings, predicting the
    original tokens at the masked positions of view 0. The head starts from the encoder checkpoint's
    MLM head when it has one."""

    name = "map"
    needs_masking = True

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.head: MaskedTokenHead | None = None
        self.head_source = "none"

    def build(self, encoder: PreTrainedModel, encoder_source: str) -> None:
        config = encoder.config
        self.head = MaskedTokenHead(config.hidden_size, config.vocab_size, config.layer_norm_eps)
        if is_checkpoint(encoder_source):
            self.head_source = "random (encoder from an scpt checkpoint)"
            return
        try:
            state = load_mlm_head_state(resolve_encoder(encoder_source))
        except (OSError, ValueError):
            state = None
        if state is None:
            self.head_source = "random (checkpoint has no MLM head)"
            return
        self.head.load_state_dict(state)
        self.head_source = "checkpoint MLM head"

    def partial(self, encoded: EncodedBatch) -> dict[str, Tensor]:
        """0-d sums over the chunk's masked tokens: cross-entropy, number of tokens, correct predictions."""
        assert self.head is not None and encoded.masked is not None, "build() and masking first"
        selected = encoded.masked.selected  # [b, T]
        view0 = encoded.hidden[: encoded.num_samples]  # [b, T, H]
        logits = self.head(view0[selected], encoded.encoder.get_input_embeddings().weight)  # [M, vocab]
        targets = encoded.batch["input_ids"][selected]
        return {
            "loss_sum": F.cross_entropy(logits, targets, reduction="sum"),
            "tokens": targets.new_tensor(targets.numel()),
            "correct": (logits.detach().argmax(dim=-1) == targets).sum(),
        }

    def combine(self, parts: dict[str, Tensor], encoded: EncodedBatch) -> ObjectiveOutput:
        tokens = parts["tokens"]
        # mean over the masked tokens of every process's batch (0 on the graph when there is none)
        loss = global_mean(parts["loss_sum"], tokens)
        return ObjectiveOutput(loss, {"acc": parts["correct"].float() / tokens} if tokens > 0 else {})


class ReconstructionObjective(Objective):
    """L_rr: review reconstruction, a causal transformer decoder (no cross-attention) conditioned on the
    [CLS] vector of view 0, teacher-forced on the masked input, predicting the original next token.

    Args:
        weight: lambda_rr.
        layers: decoder depth (SCAPT: 6 on BERT-base).
        dropout: dropout inside the decoder.
    """

    name = "rr"
    needs_masking = True

    def __init__(self, weight: float = 1.0, layers: int = 6, dropout: float = 0.1) -> None:
        super().__init__(weight)
        if layers < 1:
            raise ValueError(f"decoder_layers must be >= 1, got {layers}")
        self.layers, self.dropout = layers, dropout
        self.decoder: ReviewDecoder | None = None

    def build(self, encoder: PreTrainedModel, encoder_source: str) -> None:
        config = encoder.config
        self.decoder = ReviewDecoder(
            config.hidden_size,
            config.vocab_size,
            num_layers=self.layers,
            num_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            max_positions=config.max_position_embeddings,
            dropout=self.dropout,
            layer_norm_eps=config.layer_norm_eps,
        )

    def partial(self, encoded: EncodedBatch) -> dict[str, Tensor]:
        """0-d sums over the chunk's target tokens: cross-entropy and number of tokens."""
        assert self.decoder is not None, "build() first"
        batch = encoded.batch
        decoder_ids, decoder_mask, targets = teacher_forcing_pairs(
            encoded.encoder_ids, batch["input_ids"], batch["attention_mask"]
        )
        cls = encoded.hidden[: encoded.num_samples, 0]  # [B, H]
        mean_loss, num_targets = self.decoder(
            decoder_ids, decoder_mask, targets, cls, encoded.encoder.get_input_embeddings()
        )
        return {"loss_sum": mean_loss * num_targets, "tokens": num_targets}

    def combine(self, parts: dict[str, Tensor], encoded: EncodedBatch) -> ObjectiveOutput:
        # mean over the target tokens of every process's batch
        return ObjectiveOutput(global_mean(parts["loss_sum"], parts["tokens"]), {})

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "decoder_layers": self.layers, "decoder_dropout": self.dropout}


__all__ = [
    "ContrastiveObjective",
    "EncodedBatch",
    "MaskedAspectObjective",
    "Objective",
    "ObjectiveOutput",
    "Pooling",
    "ReconstructionObjective",
    "merge_parts",
]
