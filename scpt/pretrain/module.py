"""Phase 1: SCAPT's supervised contrastive pre-training (docs/design.md §4), as a LightningModule.

    L = lambda_scl · L_scl + lambda_map · L_map + lambda_rr · L_rr (+ any configured objective)

Each term is an :class:`~scpt.pretrain.objectives.Objective` (one module with its weight); all read
one encoder pass over the (masked, when a term needs it) input, with V views when the contrastive
loss asks for them. A weight of 0 removes its term: no parameters, no compute.

Each validation measures the representation on the held-out slice of the corpus
(:mod:`scpt.pretrain.metrics`): alignment, uniformity, mean pairwise cosine, effective rank and a
label probe (nearest class centroid and k-NN against a fixed sample of training examples), for the
contrastive features and for the encoder's sentence vector. :class:`~scpt.pretrain.monitor.CollapseMonitor`
turns them into warnings. Every ``projection_every``-th validation also draws a 2-D projection of the
held-out features coloured by label (:mod:`scpt.training.dashboards`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from scpt.encoders import DEFAULT_ENCODER, OBJECTIVE_RECORD_KEY, load_tokenizer, sentence_vector
from scpt.losses import ContrastiveLoss
from scpt.pretrain.heads import ProjectionKind, ProjectionNorm
from scpt.pretrain.masking import MaskedTokens, aspect_first_mask
from scpt.pretrain.metrics import (
    alignment,
    centroid_probe_accuracy,
    effective_rank,
    knn_probe_accuracy,
    mean_cosine,
    normalized,
    per_class_probe_scores,
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
    merge_parts,
)
from scpt.training.dashboards import announce_run, class_name, log_figure, project_2d, projection_method, scatter_figure
from scpt.training.module import EncoderModule
from scpt.training.sharding import gather_rows

#: Validation dataloader indices: the held-out slice and the probe's reference sample of training examples.
HELD_OUT, PROBE_REFERENCE = 0, 1

#: The t-SNE / PCA ``random_state`` of the held-out projections (fixed: successive pictures comparable).
PROJECTION_SEED = 0


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
        mask_probability: share of sentence tokens masked per sequence (aspect tokens first; in ``(0, 1]``
            when an objective masks).
        decoder_layers, decoder_dropout: the review-reconstruction decoder (SCAPT: 6 layers on BERT-base;
            dropout in ``[0, 1)``).
        objectives: further objectives (:class:`~scpt.pretrain.objectives.Objective` subclasses, by class path).
        grad_cache_chunk: gradient caching: encode training batches in chunks of this many samples,
            recomputing each chunk's activations in backward, so memory follows the chunk while the
            gradient stays the full batch's (``None``: one pass over the batch).
        learning_rate, weight_decay, warmup_ratio: AdamW with linear warmup and decay (a finite number > 0, a
            finite number >= 0, a share in ``[0, 1)``).
        probe_k: k of the held-out k-NN probe (>= 1).
        probe_per_class: also log each probe's per-class recall (per-class accuracy) and F1 and its macro-F1
            on the projected features, ``val/probe_<centroid|knn>_<recall|f1>/<class>`` and
            ``val/probe_<centroid|knn>_macro_f1`` (for long-tailed corpora, where accuracy hides the tail).
        projection_every: draw the held-out features in 2-D (t-SNE up to 1024 points, else PCA; ~2 s for
            512 points on 2 CPU cores) at the first validation and every ``projection_every``-th after it,
            coloured by label, for the loggers (W&B image and table, TensorBoard image, else a PNG file
            ``<log_dir>/projections/step_<global_step>.png``); 0: never. Rank 0 only.

    Raises:
        ValueError: an argument out of range or a combination that cannot train (the message names the
            argument and its value); the plain range checks run before the encoder loads.
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
        grad_cache_chunk: int | None = None,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        probe_k: int = 10,
        probe_per_class: bool = False,
        projection_every: int = 1,
    ) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        if projection_every < 0:
            raise ValueError(f"projection_every must be >= 0 (0: no projections), got {projection_every}")
        if probe_k < 1:
            raise ValueError(f"probe_k must be >= 1, got {probe_k}")
        if not 0.0 <= decoder_dropout < 1.0:
            raise ValueError(f"decoder_dropout must be in [0, 1), got {decoder_dropout}")
        for name, weight in (("lambda_scl", lambda_scl), ("lambda_map", lambda_map), ("lambda_rr", lambda_rr)):
            if not weight >= 0:
                raise ValueError(f"{name} must be >= 0, got {weight}")
        # the base checks the optimiser settings, then loads the encoder
        super().__init__(encoder, warmup_ratio=warmup_ratio, learning_rate=learning_rate, weight_decay=weight_decay)
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
        if any(o.needs_masking for o in active) and not 0.0 < mask_probability <= 1.0:
            raise ValueError(f"mask_probability must be in (0, 1], got {mask_probability}")
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
        if grad_cache_chunk is not None:
            if grad_cache_chunk < 1:
                raise ValueError(f"grad_cache_chunk must be a positive number of samples, got {grad_cache_chunk}")
            unsplit = [type(o).__name__ for o in active if not o.splits_into_chunks()]
            if unsplit:
                raise ValueError(
                    f"grad_cache_chunk: the objectives {unsplit} implement forward() only; gradient caching needs "
                    "partial() and combine() (see scpt.pretrain.objectives.Objective)"
                )
        if self.mask_token_id is None and self.needs_masking:
            raise ValueError(f"encoder {encoder!r}: its tokenizer has no mask token, which MAP and RR need")
        if "map" in self.objectives:
            rank_zero_info(f"[pretrain] MAP head: {self.objectives['map'].head_source}")
        self.last_step: dict[str, Tensor | float] = {}  # this step's logged values, detached
        self._val: dict[int, dict[str, list[Tensor]]] = {}
        self._validations = 0  # validations seen in this process's run (sanity checks excluded)

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

    @property
    def num_views(self) -> int:
        """V, encoder passes per batch (1 without a contrastive term)."""
        return self.hparams.num_views if self.contrastive is not None else 1

    def mask(self, batch: dict[str, Tensor]) -> tuple[Tensor, MaskedTokens | None]:
        """``(encoder_ids [B, T], masking)``: the corrupted ids when an objective needs masking, else the ids."""
        if not self.needs_masking:
            return batch["input_ids"], None
        masked = aspect_first_mask(
            batch["input_ids"],
            batch["maskable"],
            batch["aspect"],
            mask_token_id=self.mask_token_id,
            vocab_size=self.encoder.config.vocab_size,
            mask_probability=self.hparams.mask_probability,
        )
        return masked.input_ids, masked

    def encode_masked(self, batch: dict[str, Tensor], encoder_ids: Tensor, masked: MaskedTokens | None) -> EncodedBatch:
        """One encoder pass of V views over ``encoder_ids`` ``[B, T]``."""
        num_views = self.num_views
        hidden = self.hidden_states(
            encoder_ids.repeat(num_views, 1),
            batch["attention_mask"].repeat(num_views, 1),
            batch["token_type_ids"].repeat(num_views, 1),
        )  # [V·B, T, H], view-major
        return EncodedBatch(batch, encoder_ids, masked, hidden, num_views, self.encoder)

    def encode(self, batch: dict[str, Tensor]) -> EncodedBatch:
        """One encoder pass of V views over the batch (masked when an objective needs it)."""
        return self.encode_masked(batch, *self.mask(batch))

    def compute_terms(self, batch: dict[str, Tensor]) -> PretrainTerms:
        """Every active objective on one batch, and their weighted sum.

        With ``grad_cache_chunk = c`` and a batch of more than c samples (while gradients are on), the
        batch is encoded in chunks of c samples whose activations are not kept: each chunk's parts
        (:meth:`~scpt.pretrain.objectives.Objective.partial`) come from a checkpointed pass that
        backward re-runs with the random state of the first pass (dropout), feeding it the gradient of
        the full-batch loss with respect to those parts (GradCache, docs/design.md §3). Memory follows
        c; the gradient is the full batch's.
        """
        chunk = self.hparams.grad_cache_chunk
        num_samples = batch["input_ids"].shape[0]
        if not chunk or num_samples <= chunk or not torch.is_grad_enabled():
            encoded = self.encode(batch)
            terms = {name: objective(encoded) for name, objective in self.objectives.items()}
        else:
            encoder_ids, masked = self.mask(batch)  # once for the whole batch: the chunks replay no masking
            chunks = []
            for start in range(0, num_samples, chunk):
                rows = slice(start, start + chunk)
                chunk_masked = None if masked is None else MaskedTokens(*(part[rows] for part in masked))
                chunk_batch = {key: value[rows] for key, value in batch.items()}
                chunks.append(
                    checkpoint(
                        self._chunk_parts, chunk_batch, encoder_ids[rows], chunk_masked, use_reentrant=False
                    )  # preserve_rng_state (default): backward replays the chunk's dropout
                )
            encoded = EncodedBatch(batch, encoder_ids, masked, None, self.num_views, self.encoder, chunk)
            terms = {
                name: objective.combine(merge_parts([parts[name] for parts in chunks]), encoded)
                for name, objective in self.objectives.items()
            }
        total = sum(self.objectives[name].weight * out.loss for name, out in terms.items())
        return PretrainTerms(total, terms)

    def _chunk_parts(
        self, batch: dict[str, Tensor], encoder_ids: Tensor, masked: MaskedTokens | None
    ) -> dict[str, dict[str, Tensor]]:
        """Every objective's part of one chunk of samples."""
        encoded = self.encode_masked(batch, encoder_ids, masked)
        return {name: objective.partial(encoded) for name, objective in self.objectives.items()}

    # ----------------------------------------------------------------------------------------------
    # Lightning hooks
    # ----------------------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        """Every logger gets the resolved configuration as flat keys (:func:`~scpt.training.dashboards.run_config`:
        module, data, trainer, seed, and the objective's :meth:`describe`); a W&B run gets the tag ``pretrain``."""
        announce_run(self.trainer, "pretrain", self.describe())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        result = self.compute_terms(batch)
        size = batch["input_ids"].shape[0]
        logged: dict[str, Tensor | float] = {"loss": result.total}
        for name, out in result.terms.items():
            logged[name] = out.loss
            logged.update({f"{name}_{key}": value for key, value in out.metrics.items()})
        # under DDP each process's loss is its share of the global mean (scpt.training.distributed): the
        # average over processes is the value of the concatenated batch
        sync = self.trainer.world_size > 1
        for key, value in logged.items():
            self.log(
                f"train/{key}",
                value,
                prog_bar=key == "loss",
                batch_size=size,
                on_step=True,
                on_epoch=True,
                sync_dist=sync,
            )
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
        rows = {"features": features.float(), "vectors": vectors.float(), "labels": batch["labels"]}
        if "index" in batch:  # the example's position in its split (the datamodule's held-out loaders)
            rows["index"] = batch["index"]
        store = self._val.setdefault(dataloader_idx, {})
        for key, value in rows.items():
            store.setdefault(key, []).append(value)

    def _collected(self, index: int) -> dict[str, Tensor] | None:
        """Dataloader ``index``'s rows (``features`` [N, D], ``vectors`` [N, H], ``labels`` [N]) over every
        process: each process evaluated a disjoint share, of uneven size, which ``gather_rows`` collects
        without repeats; sorted by ``index`` when the batches carry it, i.e. in the single-process order,
        so the metrics equal those of one process."""
        store = self._val.pop(index, None)
        if not store or not store["features"]:
            return None
        collected = {key: torch.cat(parts) for key, parts in store.items()}
        if self.trainer.world_size > 1:
            collected = {key: gather_rows(value) for key, value in collected.items()}
        if "index" in collected:
            order = torch.argsort(collected.pop("index"))
            collected = {key: value[order] for key, value in collected.items()}
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
            if self.hparams.get("probe_per_class", False):
                datamodule = getattr(self.trainer, "datamodule", None)
                metrics.update(
                    per_class_probe_scores(
                        held_out["features"], labels, reference["features"], reference["labels"],
                        k=self.hparams.probe_k, class_names=tuple(getattr(datamodule, "class_names", ()) or ()),
                    )
                )  # fmt: skip
        loss = self.contrastive.loss if self.contrastive is not None else None
        if loss is not None and loss.uses_labels and loss.min_views == 1:
            metrics["scl"] = loss(z.unsqueeze(1), labels)
            metrics.update(loss.last_stats.bounds("scl_"))
        for key, value in metrics.items():
            # the same value on every process (computed from the gathered rows): sync_dist averages equal
            # values, and tells Lightning that the epoch-level value is global
            self.log(f"val/{key}", value, sync_dist=True)
        if self._projection_due():
            self.log_projection(z, labels)

    def _projection_due(self) -> bool:
        """Whether this validation draws the projection: the first and every ``projection_every``-th after it,
        sanity checks not counted (counted in this process: a resumed run counts afresh), on global rank 0
        only. The projection draws from its own seeded generator, never from the global random state."""
        every = self.hparams.get("projection_every", 1)
        if not every or self.trainer.sanity_checking:
            return False
        due = self._validations % every == 0
        self._validations += 1
        return due and self.trainer.is_global_zero

    def log_projection(self, features: Tensor, labels: Tensor) -> None:
        """Log the 2-D projection of held-out ``features`` [N, D] coloured by ``labels`` [N] as ``val/projection``
        (W&B: image and table ``x, y, label``; TensorBoard: image; otherwise ``projections/step_<step>.png``
        beside the run)."""
        points = project_2d(features, seed=PROJECTION_SEED)
        datamodule = getattr(self.trainer, "datamodule", None)
        names = tuple(getattr(datamodule, "class_names", ()) or ()) or None
        step = self.trainer.global_step
        method = "t-SNE" if projection_method(len(points)) == "tsne" else "PCA"
        figure = scatter_figure(points, labels, names, f"held-out features, {method}, step {step}")
        rows = [[float(x), float(y), class_name(int(label), names)] for (x, y), label in zip(points, labels.tolist())]
        log_figure(
            self.trainer, "val/projection", figure, step, table=(["x", "y", "label"], rows),
            png_name=f"projections/step_{step}.png",
        )  # fmt: skip


__all__ = ["HELD_OUT", "OBJECTIVE_RECORD_KEY", "PROBE_REFERENCE", "ContrastivePretrainModule", "PretrainTerms"]
