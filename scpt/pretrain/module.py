"""Phase 1: SCAPT's supervised contrastive pre-training (docs/design.md §4), as a LightningModule.

    L = lambda_scl · L_scl + lambda_map · L_map + lambda_rr · L_rr (+ any configured objective)

Each term is an :class:`~scpt.pretrain.objectives.Objective` (one module with its weight); all read
one encoder pass over the (masked, when a term needs it) input, with V views when the contrastive
loss asks for them. A weight of 0 removes its term: no parameters, no compute.

Each validation measures the representation on the held-out slice of the corpus
(:mod:`scpt.pretrain.metrics`): alignment, uniformity, mean pairwise cosine, effective rank and a
label probe (nearest class centroid and k-NN against a fixed sample of training examples), for the
contrastive features and for the encoder's sentence vector. :class:`~scpt.pretrain.monitor.CollapseMonitor`
turns them into warnings.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn

from scpt.encoders import DEFAULT_ENCODER, OBJECTIVE_RECORD_KEY, load_tokenizer, sentence_vector
from scpt.losses import ContrastiveLoss
from scpt.pretrain.heads import ProjectionKind, ProjectionNorm
from scpt.pretrain.masking import aspect_first_mask
from scpt.pretrain.metrics import (
    alignment,
    centroid_probe_accuracy,
    effective_rank,
    knn_probe_accuracy,
    mean_cosine,
    normalized,
    uniformity,
)
from scpt.pretrain.objectives import (
    ContrastiveObjective,
    EncodedBatch,
    MaskedAspectObjective,
    Objective,
    ObjectiveOutput,
    Pooling,
    ReconstructionObjective,
)
from scpt.training.module import EncoderModule

#: Validation dataloader indices: the held-out slice and the probe's reference sample of training examples.
HELD_OUT, PROBE_REFERENCE = 0, 1


class PretrainTerms(NamedTuple):
    """One step's objective: the weighted total and each active term's output, by objective name."""

    total: Tensor
    terms: dict[str, ObjectiveOutput]


class ContrastivePretrainModule(EncoderModule):
    """SCAPT pre-training of an HF encoder.

    Args:
        encoder: HF model directory or name, ``*.ckpt`` of an scpt module (encoder weights only), or
            the offline default.
        loss: the contrastive loss, any :class:`~scpt.losses.ContrastiveLoss` chosen in the config by
            class path (``configs/loss/*.yaml``). ``None``: SCAPT's, ``SupConLoss(temperature=0.07)``.
        projection_dim, projection: the projection head (SCAPT: 256, ``"linear"``; or ``"mlp"``).
        projection_norm: ``"batch"`` batch-normalises the projected features (no collapse possible).
        pooling: the sentence vector for the contrastive term, ``"cls"`` (SCAPT) or ``"mean"``.
        num_views: V, encoder passes per batch (dropout noise makes them differ); at least the loss's
            ``min_views``.
        queue_size: K contrast-only features (with labels) from earlier batches (0: none).
        momentum: the queue's keys come from an EMA copy of encoder and projection (0: from the features).
        lambda_scl, lambda_map, lambda_rr: weights of the three built-in objectives (0 removes the term).
        mask_probability: share of sentence tokens masked per sequence (aspect tokens first).
        decoder_layers, decoder_dropout: the review-reconstruction decoder (SCAPT: 6 layers on BERT-base).
        objectives: further objectives (:class:`~scpt.pretrain.objectives.Objective` subclasses, by class path).
        learning_rate, weight_decay, warmup_ratio: AdamW with linear warmup and decay.
        probe_k: k of the held-out k-NN probe.
    """

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        loss: ContrastiveLoss | None = None,
        projection_dim: int = 256,
        projection: ProjectionKind = "linear",
        projection_norm: ProjectionNorm = "none",
        pooling: Pooling = "cls",
        num_views: int = 1,
        queue_size: int = 0,
        momentum: float = 0.0,
        lambda_scl: float = 2.0,
        lambda_map: float = 1.0,
        lambda_rr: float = 1.0,
        mask_probability: float = 0.15,
        decoder_layers: int = 6,
        decoder_dropout: float = 0.1,
        objectives: list[Objective] | None = None,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        probe_k: int = 10,
    ) -> None:
        super().__init__(encoder, warmup_ratio=warmup_ratio)
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        for name, weight in (("lambda_scl", lambda_scl), ("lambda_map", lambda_map), ("lambda_rr", lambda_rr)):
            if not weight >= 0:
                raise ValueError(f"{name} must be >= 0, got {weight}")
        built_in = [
            ContrastiveObjective(
                lambda_scl, loss, projection_dim, projection, projection_norm, pooling, queue_size, momentum
            ),
            MaskedAspectObjective(lambda_map),
            ReconstructionObjective(lambda_rr, decoder_layers, decoder_dropout),
        ]
        active = [o for o in built_in + list(objectives or []) if o.weight > 0]
        if not active:
            raise ValueError("every objective has weight 0 (lambda_scl, lambda_map, lambda_rr, ...): nothing to train")
        names = [o.name for o in active]
        if len(set(names)) != len(names):
            raise ValueError(f"model.objectives: two objectives share a name: {names}")
        contrastive = [o for o in active if isinstance(o, ContrastiveObjective)]
        for objective in contrastive:
            if num_views < objective.loss.min_views:
                raise ValueError(
                    f"{type(objective.loss).__name__} contrasts {objective.loss.min_views} views of each sentence: "
                    f"set num_views >= {objective.loss.min_views} (got {num_views})"
                )
        self.save_hyperparameters(ignore=["loss", "objectives"])  # primitives only: weights_only-loadable
        for objective in active:
            objective.build(self.encoder, encoder)
        self.objectives = nn.ModuleDict({o.name: o for o in active})
        self.mask_token_id: int | None = load_tokenizer(encoder).mask_token_id
        self.needs_masking = any(o.needs_masking for o in active)
        if self.mask_token_id is None and self.needs_masking:
            raise ValueError(f"encoder {encoder!r}: its tokenizer has no mask token, which MAP and RR need")
        if "map" in self.objectives:
            rank_zero_info(f"[pretrain] MAP head: {self.objectives['map'].head_source}")
        self.last_step: dict[str, Tensor | float] = {}  # this step's logged values, detached
        self._val: dict[int, dict[str, list[Tensor]]] = {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The encoder record (base class) and the objective's description (loss class, tau, queue, ...), which
        the hyperparameters leave out so that ``--ckpt_path`` resumes parse; ``scpt export`` copies it."""
        super().on_save_checkpoint(checkpoint)
        checkpoint[OBJECTIVE_RECORD_KEY] = self.describe()

    @property
    def contrastive(self) -> ContrastiveObjective | None:
        """The contrastive term, if one is active (a lookup, not a second registration of the module)."""
        return next((o for o in self.objectives.values() if isinstance(o, ContrastiveObjective)), None)

    def describe(self) -> dict[str, Any]:
        """Flat settings of every active objective and its loss, for loggers (``lambda_scl``, ``loss``,
        ``loss_temperature``, ``queue_size``, ...)."""
        described: dict[str, Any] = {}
        for objective in self.objectives.values():
            described.update(objective.hparams())
        return described

    # ----------------------------------------------------------------------------------------------
    # The objective
    # ----------------------------------------------------------------------------------------------

    def encode(self, batch: dict[str, Tensor]) -> EncodedBatch:
        """One encoder pass of V views over the batch (masked when an objective needs it)."""
        input_ids = batch["input_ids"]
        num_views = self.hparams.num_views if self.contrastive is not None else 1
        masked = None
        encoder_ids = input_ids
        if self.needs_masking:
            masked = aspect_first_mask(
                input_ids,
                batch["maskable"],
                batch["aspect"],
                mask_token_id=self.mask_token_id,
                vocab_size=self.encoder.config.vocab_size,
                mask_probability=self.hparams.mask_probability,
            )
            encoder_ids = masked.input_ids
        hidden = self.hidden_states(
            encoder_ids.repeat(num_views, 1),
            batch["attention_mask"].repeat(num_views, 1),
            batch["token_type_ids"].repeat(num_views, 1),
        )  # [V·B, T, H], view-major
        return EncodedBatch(batch, encoder_ids, masked, hidden, num_views, self.encoder, self._gather)

    def _gather(self, tensor: Tensor) -> Tensor:
        """``tensor`` [B, ...] from every process, concatenated (itself on one process)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return tensor
        return self.all_gather(tensor).flatten(0, 1)

    def compute_terms(self, batch: dict[str, Tensor]) -> PretrainTerms:
        """Every active objective on one batch, and their weighted sum."""
        encoded = self.encode(batch)
        terms = {name: objective(encoded) for name, objective in self.objectives.items()}
        total = sum(self.objectives[name].weight * out.loss for name, out in terms.items())
        return PretrainTerms(total, terms)

    # ----------------------------------------------------------------------------------------------
    # Lightning hooks
    # ----------------------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        for logger in self.loggers:
            logger.log_hyperparams(self.describe())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        result = self.compute_terms(batch)
        size = batch["input_ids"].shape[0]
        logged: dict[str, Tensor | float] = {"loss": result.total}
        for name, out in result.terms.items():
            logged[name] = out.loss
            logged.update({f"{name}_{key}": value for key, value in out.metrics.items()})
        for key, value in logged.items():
            self.log(f"train/{key}", value, prog_bar=key == "loss", batch_size=size, on_step=True, on_epoch=True)
        # detached, not converted: float() would synchronise with the device every step for every term
        self.last_step = {key: value.detach() if isinstance(value, Tensor) else value for key, value in logged.items()}
        return result.total

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser step, then each objective's :meth:`~scpt.pretrain.objectives.Objective.after_optimizer_step`
        (the momentum encoder moves once per optimiser step, also under gradient accumulation, and before
        any callback saves a checkpoint)."""
        super().optimizer_step(*args, **kwargs)
        self.after_optimizer_step()

    def after_optimizer_step(self) -> None:
        for objective in self.objectives.values():
            objective.after_optimizer_step(self.encoder)

    @torch.no_grad()
    def representations(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Normalised representations of an uncorrupted batch: ``(features [B, D], sentence vectors [B, H])``;
        the features are the contrastive projection (the sentence vector when there is none)."""
        hidden = self.hidden_states(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        if self.contrastive is None:
            vectors = sentence_vector(hidden, batch["attention_mask"], "cls")
            return normalized(vectors), normalized(vectors)
        vectors = sentence_vector(hidden, batch["attention_mask"], self.contrastive.pooling)
        return normalized(self.contrastive.projection(vectors)), normalized(vectors)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        features, vectors = self.representations(batch)
        store = self._val.setdefault(dataloader_idx, {"features": [], "vectors": [], "labels": []})
        store["features"].append(features.float())
        store["vectors"].append(vectors.float())
        store["labels"].append(batch["labels"])

    def _collected(self, index: int) -> dict[str, Tensor] | None:
        store = self._val.pop(index, None)
        if not store or not store["features"]:
            return None
        collected = {key: torch.cat(parts) for key, parts in store.items()}
        if self.trainer.world_size > 1:
            collected = {key: self.all_gather(value).flatten(0, 1) for key, value in collected.items()}
        return collected

    def on_validation_epoch_end(self) -> None:
        held_out, reference = self._collected(HELD_OUT), self._collected(PROBE_REFERENCE)
        self._val.clear()
        if held_out is None or held_out["features"].shape[0] < 2:
            return
        z, labels = held_out["features"], held_out["labels"]
        metrics = {
            "alignment": alignment(z, labels),
            "uniformity": uniformity(z),
            "mean_cosine": mean_cosine(z),
            "effective_rank": effective_rank(z),
        }
        if reference is not None:
            for prefix, key in (("", "features"), ("encoder_", "vectors")):
                query, pool = held_out[key], reference[key]
                metrics[f"{prefix}probe_centroid"] = centroid_probe_accuracy(query, labels, pool, reference["labels"])
                metrics[f"{prefix}probe_knn"] = knn_probe_accuracy(
                    query, labels, pool, reference["labels"], k=self.hparams.probe_k
                )
        loss = self.contrastive.loss if self.contrastive is not None else None
        if loss is not None and loss.uses_labels and loss.min_views == 1:
            metrics["scl"] = loss(z.unsqueeze(1), labels)
            metrics["scl_collapsed"] = loss.last_stats.collapsed_loss
        for key, value in metrics.items():
            self.log(f"val/{key}", value, sync_dist=False)


__all__ = ["HELD_OUT", "OBJECTIVE_RECORD_KEY", "PROBE_REFERENCE", "ContrastivePretrainModule", "PretrainTerms"]
