"""Phase 1: SCAPT's supervised contrastive pre-training (DESIGN.md §4), as a LightningModule.

    L = lambda_scl · L_scl + lambda_map · L_map + lambda_rr · L_rr

- L_scl: the configured contrastive loss (any of :mod:`scpt.losses`; SCAPT: SupCon L_out, tau = 0.07)
  on ``projection(h_CLS)`` of V views (V = 1 as SCAPT; V >= 2 encodes the batch V times and the
  dropout noise makes the views differ, as SimCSE).
- L_map: masked aspect prediction (:mod:`scpt.pretrain.masking`), BERT's MLM head tied to the input
  embeddings, initialised from the encoder checkpoint's MLM head when it has one.
- L_rr: review reconstruction (:class:`~scpt.pretrain.heads.ReviewDecoder`), conditioned on h_CLS,
  teacher-forced on the masked input, predicting the original.

All three read one encoder pass over the corrupted input (with V views, view 0 feeds MAP and RR).
A weight of 0 removes its head: no parameters, no compute.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn

from scpt.encoders import (
    DEFAULT_ENCODER,
    ENCODER_RECORD_KEY,
    cls_vector,
    encoder_record,
    is_checkpoint,
    load_encoder,
    load_mlm_head_state,
    load_tokenizer,
    resolve_encoder,
    tokenizer_source,
)
from scpt.losses import SimCSELoss, SupConLoss
from scpt.pretrain.heads import MaskedTokenHead, ProjectionHead, ProjectionKind, ReviewDecoder, teacher_forcing_pairs
from scpt.pretrain.masking import aspect_first_mask
from scpt.pretrain.metrics import alignment, normalized, uniformity
from scpt.training.optim import linear_warmup_decay, no_decay_parameter_groups

#: Loss attributes copied into the hyperparameters (as ``loss_<name>``) when the loss has them.
LOSS_HPARAMS = ("temperature", "base_temperature", "variant", "alpha", "hard_negative_weight", "normalize")


def loss_hparams(loss: nn.Module) -> dict[str, Any]:
    """Flat, logger-friendly description of a loss: its class path and its settings."""
    module = type(loss).__module__
    package = "scpt.losses" if module.startswith("scpt.losses.") else module  # the public path of scpt's losses
    described: dict[str, Any] = {"loss": f"{package}.{type(loss).__name__}"}
    for name in LOSS_HPARAMS:
        if hasattr(loss, name):
            described[f"loss_{name}"] = getattr(loss, name)
    return described


class PretrainTerms(NamedTuple):
    """One step's objective: the weighted total and each term (``None`` where the weight is 0)."""

    total: Tensor
    scl: Tensor | None
    map: Tensor | None
    rr: Tensor | None
    valid_anchor_fraction: float | None
    map_accuracy: Tensor | None


class ContrastivePretrainModule(pl.LightningModule):
    """SCAPT pre-training of an HF encoder.

    Args:
        encoder: HF model directory or name, ``*.ckpt`` of an scpt module (encoder weights only), or
            the offline default.
        loss: the contrastive loss, chosen in the config by class path (``configs/loss/*.yaml``).
            ``SupConLoss``/``DSCLLoss`` take the batch's labels; ``SimCSELoss`` needs ``num_views >= 2``
            and ignores labels. ``None``: SCAPT's, ``SupConLoss(temperature=0.07)`` (L_out).
        projection_dim: output size of the projection head (SCAPT: 256).
        projection: ``"linear"`` (SCAPT) or ``"mlp"``.
        num_views: V, encoder passes per batch (dropout noise makes them differ).
        lambda_scl, lambda_map, lambda_rr: weights of the three objectives (0 removes the head).
        mask_probability: share of sentence tokens masked per sequence (aspect tokens first).
        decoder_layers: review-reconstruction decoder depth (SCAPT: 6 on BERT-base).
        decoder_dropout: dropout inside the decoder.
        learning_rate, weight_decay, warmup_ratio: AdamW with linear warmup and decay.
    """

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        loss: nn.Module | None = None,
        projection_dim: int = 256,
        projection: ProjectionKind = "linear",
        num_views: int = 1,
        lambda_scl: float = 2.0,
        lambda_map: float = 1.0,
        lambda_rr: float = 1.0,
        mask_probability: float = 0.15,
        decoder_layers: int = 6,
        decoder_dropout: float = 0.1,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        if loss is None:
            loss = SupConLoss(temperature=0.07)
        for name, weight in (("lambda_scl", lambda_scl), ("lambda_map", lambda_map), ("lambda_rr", lambda_rr)):
            if weight < 0:
                raise ValueError(f"{name} must be >= 0, got {weight}")
        if lambda_scl == lambda_map == lambda_rr == 0:
            raise ValueError("lambda_scl, lambda_map and lambda_rr are all 0: nothing to train")
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        if isinstance(loss, SimCSELoss) and num_views < 2 and lambda_scl > 0:
            raise ValueError("SimCSELoss contrasts two views of each sentence: set num_views >= 2")
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        hparams = {
            "encoder": encoder,
            "projection_dim": projection_dim,
            "projection": projection,
            "num_views": num_views,
            "lambda_scl": lambda_scl,
            "lambda_map": lambda_map,
            "lambda_rr": lambda_rr,
            "mask_probability": mask_probability,
            "decoder_layers": decoder_layers,
            "decoder_dropout": decoder_dropout,
            "learning_rate": learning_rate,
            "weight_decay": weight_decay,
            "warmup_ratio": warmup_ratio,
            **loss_hparams(loss),
        }
        self.save_hyperparameters(hparams)  # flat primitives: logger-friendly and weights_only-loadable
        self.encoder = load_encoder(encoder)
        self.encoder.train()  # from_pretrained returns eval mode (dropout off); Lightning keeps module modes
        self.tokenizer_source = tokenizer_source(encoder)
        config = self.encoder.config
        self.loss = loss
        self.projection = ProjectionHead(config.hidden_size, projection_dim, projection) if lambda_scl > 0 else None
        self.map_head = MaskedTokenHead(config.hidden_size, config.vocab_size, config.layer_norm_eps) if lambda_map > 0 else None
        self.map_head_source = "none"
        if self.map_head is not None:
            self.map_head_source = self._initialise_map_head(encoder)
        self.decoder = (
            ReviewDecoder(
                config.hidden_size,
                config.vocab_size,
                num_layers=decoder_layers,
                num_heads=config.num_attention_heads,
                intermediate_size=config.intermediate_size,
                max_positions=config.max_position_embeddings,
                dropout=decoder_dropout,
                layer_norm_eps=config.layer_norm_eps,
            )
            if lambda_rr > 0
            else None
        )
        self.mask_token_id: int | None = load_tokenizer(encoder).mask_token_id
        if self.mask_token_id is None and (self.map_head is not None or self.decoder is not None):
            raise ValueError(f"encoder {encoder!r}: its tokenizer has no mask token, which MAP and RR need")
        self._val_features: list[Tensor] = []
        self._val_labels: list[Tensor] = []

    def _initialise_map_head(self, encoder: str) -> str:
        """Copy the checkpoint's MLM head into the MAP head when it has one; say which happened."""
        if is_checkpoint(encoder):
            return "random (encoder from an scpt checkpoint)"
        try:
            state = load_mlm_head_state(resolve_encoder(encoder))
        except (OSError, ValueError):
            state = None
        if state is None:
            rank_zero_info(f"[pretrain] {encoder}: no MLM head in the checkpoint; the MAP head starts at random")
            return "random (checkpoint has no MLM head)"
        self.map_head.load_state_dict(state)
        rank_zero_info(f"[pretrain] {encoder}: MAP head initialised from the checkpoint's MLM head")
        return "checkpoint MLM head"

    # ----------------------------------------------------------------------------------------------
    # The objective
    # ----------------------------------------------------------------------------------------------

    def contrastive_loss(self, features: Tensor, labels: Tensor) -> Tensor:
        """The configured loss on ``features`` [B, V, D] and ``labels`` [B]."""
        if isinstance(self.loss, SimCSELoss):
            return self.loss(features[:, 0], features[:, 1])
        return self.loss(features, labels)

    def compute_terms(self, batch: dict[str, Tensor]) -> PretrainTerms:
        """All objectives of one batch (``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels``,
        ``maskable``, ``aspect``; each ``[B, T]`` except ``labels`` [B])."""
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        num_samples, num_views = input_ids.shape[0], self.hparams.num_views
        masked = None
        encoder_ids = input_ids
        if self.map_head is not None or self.decoder is not None:
            masked = aspect_first_mask(
                input_ids,
                batch["maskable"],
                batch["aspect"],
                mask_token_id=self.mask_token_id,
                vocab_size=self.encoder.config.vocab_size,
                mask_probability=self.hparams.mask_probability,
            )
            encoder_ids = masked.input_ids
        hidden = self.encoder(
            input_ids=encoder_ids.repeat(num_views, 1),
            attention_mask=attention_mask.repeat(num_views, 1),
            token_type_ids=batch["token_type_ids"].repeat(num_views, 1),
        ).last_hidden_state  # [V·B, T, H], view-major
        sentence_vectors = cls_vector(hidden)  # [V·B, H]
        total = hidden.new_zeros(())
        scl = map_loss = rr = map_accuracy = None
        valid_fraction = None
        if self.projection is not None:
            features = self.projection(sentence_vectors).view(num_views, num_samples, -1).transpose(0, 1)  # [B, V, D]
            scl = self.contrastive_loss(features, batch["labels"])
            stats = getattr(self.loss, "last_stats", None)
            valid_fraction = stats.valid_fraction if stats is not None else None
            total = total + self.hparams.lambda_scl * scl
        view0 = hidden[:num_samples]  # [B, T, H]
        word_embeddings = self.encoder.get_input_embeddings()
        if self.map_head is not None:
            assert masked is not None
            selected = masked.selected  # [B, T]
            logits = self.map_head(view0[selected], word_embeddings.weight)  # [M, vocab]
            targets = input_ids[selected]
            map_loss = F.cross_entropy(logits, targets) if targets.numel() else logits.sum() * 0.0
            map_accuracy = (logits.argmax(dim=-1) == targets).float().mean() if targets.numel() else None
            total = total + self.hparams.lambda_map * map_loss
        if self.decoder is not None:
            assert masked is not None
            decoder_ids, decoder_mask, targets = teacher_forcing_pairs(encoder_ids, input_ids, attention_mask)
            rr, _ = self.decoder(decoder_ids, decoder_mask, targets, sentence_vectors[:num_samples], word_embeddings)
            total = total + self.hparams.lambda_rr * rr
        return PretrainTerms(total, scl, map_loss, rr, valid_fraction, map_accuracy)


    # ----------------------------------------------------------------------------------------------
    # Lightning hooks
    # ----------------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        terms = self.compute_terms(batch)
        size = batch["input_ids"].shape[0]
        self.log("train/loss", terms.total, prog_bar=True, batch_size=size, on_step=True, on_epoch=True)
        for name in ("scl", "map", "rr"):
            value = getattr(terms, name)
            if value is not None:
                self.log(f"train/{name}", value, batch_size=size, on_step=True, on_epoch=True)
        if terms.valid_anchor_fraction is not None:
            self.log("train/valid_anchor_fraction", terms.valid_anchor_fraction, batch_size=size, on_step=True, on_epoch=True)
        if terms.map_accuracy is not None:
            self.log("train/map_acc", terms.map_accuracy, batch_size=size, on_step=False, on_epoch=True)
        return terms.total

    def representations(self, batch: dict[str, Tensor]) -> Tensor:
        """Normalised representations ``[B, D]`` of an uncorrupted batch: the projection of h_CLS
        (h_CLS itself when there is no projection head)."""
        hidden = self.encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
        ).last_hidden_state
        vectors = cls_vector(hidden)
        return normalized(self.projection(vectors) if self.projection is not None else vectors)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._val_features.append(self.representations(batch).float())
        self._val_labels.append(batch["labels"])

    def on_validation_epoch_end(self) -> None:
        if not self._val_features:
            return
        features = torch.cat(self._val_features)
        labels = torch.cat(self._val_labels)
        self._val_features.clear()
        self._val_labels.clear()
        if self.trainer.world_size > 1:
            features = self.all_gather(features).flatten(0, 1)
            labels = self.all_gather(labels).flatten(0, 1)
        self.log("val/alignment", alignment(features, labels), sync_dist=False)
        self.log("val/uniformity", uniformity(features), sync_dist=False)
        if self.projection is not None and not isinstance(self.loss, SimCSELoss):
            self.log("val/scl", self.loss(features.unsqueeze(1), labels), sync_dist=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the encoder's architecture and tokenizer: ``--model.encoder x.ckpt`` and ``scpt export`` read them."""
        checkpoint[ENCODER_RECORD_KEY] = encoder_record(self.encoder, self.tokenizer_source)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(no_decay_parameter_groups(self, self.hparams.weight_decay), lr=self.hparams.learning_rate)
        total_steps = int(self.trainer.estimated_stepping_batches)
        warmup_steps = int(self.hparams.warmup_ratio * total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(total_steps, warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


__all__ = ["ContrastivePretrainModule", "PretrainTerms", "loss_hparams"]
