"""The base LightningModule of both phases: an HF encoder trained with AdamW and linear warmup/decay.

A phase's module subclasses :class:`EncoderModule`, adds its heads and its steps, and saves its
hyperparameters, which must include ``learning_rate``, ``weight_decay`` and ``warmup_ratio``
(:data:`OPTIMIZER_HPARAMS`)::

    class MyModule(EncoderModule):
        def __init__(self, encoder: str = DEFAULT_ENCODER, learning_rate: float = 5e-5,
                     weight_decay: float = 0.01, warmup_ratio: float = 0.1) -> None:
            super().__init__(encoder, warmup_ratio=warmup_ratio, learning_rate=learning_rate, weight_decay=weight_decay)
            self.save_hyperparameters()
            self.head = nn.Linear(self.encoder.config.hidden_size, 3)
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedModel

from scpt.encoders import ENCODER_RECORD_KEY, UNUSED_PREFIXES, encoder_record, load_encoder, tokenizer_source
from scpt.training.optim import check_optimizer_settings, linear_warmup_decay, no_decay_parameter_groups
from scpt.training.resume import RNG_RECORD_KEY, restore_dataloader_state, restore_rng_state, rng_state

#: Hyperparameters that :meth:`EncoderModule.configure_optimizers` reads.
OPTIMIZER_HPARAMS = ("learning_rate", "weight_decay", "warmup_ratio")


class EncoderModule(pl.LightningModule):
    """An HF encoder (``self.encoder``, in training mode) with the optimisation both phases share.

    - ``configure_optimizers``: AdamW at ``hparams.learning_rate`` with ``hparams.weight_decay`` on weight
      matrices only (:func:`~scpt.training.optim.no_decay_parameter_groups`), and a per-step linear
      warmup over ``hparams.warmup_ratio`` of the training steps, then linear decay to 0.
    - ``on_save_checkpoint``: records the encoder's HF config and tokenizer source under
      :data:`~scpt.encoders.ENCODER_RECORD_KEY`, which ``--model.encoder x.ckpt`` and ``scpt export`` read,
      and the random state that an exact resume restores in ``on_train_start`` (:mod:`scpt.training.resume`).

    Args:
        encoder: an HF model directory or name, an scpt ``*.ckpt`` (encoder weights only) or
            :data:`~scpt.encoders.DEFAULT_ENCODER` (see :mod:`scpt.encoders`).
        warmup_ratio: the share of training steps spent warming up, checked here (in ``[0, 1)``); the
            subclass also saves it as a hyperparameter, where ``configure_optimizers`` reads it.
        learning_rate, weight_decay: AdamW's, checked here when given (a finite number > 0; a finite
            number >= 0), before the encoder loads; saved by the subclass like ``warmup_ratio``.

    Raises:
        ValueError: a setting out of range (:func:`~scpt.training.optim.check_optimizer_settings`: the
            message names it and its value).

    Attributes:
        encoder: the HF ``AutoModel``.
        tokenizer_source: where the encoder's tokenizer lives (recorded in checkpoints).
    """

    def __init__(
        self,
        encoder: str,
        *,
        warmup_ratio: float,
        learning_rate: float | None = None,
        weight_decay: float | None = None,
    ) -> None:
        super().__init__()
        check_optimizer_settings(warmup_ratio=warmup_ratio, learning_rate=learning_rate, weight_decay=weight_decay)
        self.encoder: PreTrainedModel = load_encoder(encoder)
        self.encoder.train()  # from_pretrained returns eval mode (dropout off); Lightning keeps module modes
        self.tokenizer_source: str = tokenizer_source(encoder)
        # scpt never reads the pooler (UNUSED_PREFIXES), so its parameters get no gradient, which DDP takes for
        # an error unless it ignores them (they keep requires_grad: optimiser groups, checkpoints and resuming
        # stay as they were; loaded alike on every process and never updated, they stay equal across processes)
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            self, [f"encoder.{name}" for name, _ in self.encoder.named_parameters() if name.startswith(UNUSED_PREFIXES)]
        )

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        """The encoder's last hidden states ``[B, T, H]`` for ``[B, T]`` ids, mask and segment ids."""
        return self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the encoder's architecture and tokenizer (read by ``--model.encoder x.ckpt`` and ``scpt export``)
        and the random generators' states (:mod:`scpt.training.resume`)."""
        checkpoint[ENCODER_RECORD_KEY] = encoder_record(self.encoder, self.tokenizer_source)
        checkpoint[RNG_RECORD_KEY] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the saved random state for :meth:`on_train_start` (the dataloaders are set up in between)."""
        self._resumed_rng_state = checkpoint.get(RNG_RECORD_KEY)

    def on_train_start(self) -> None:
        """When resuming, continue the data where the checkpoint left it and put back the random state saved
        with it: the resumed run then trains on the batches, with the dropout masks (and phase 1's token
        masks), that the uninterrupted run did."""
        restore_dataloader_state(self.trainer)
        state = getattr(self, "_resumed_rng_state", None)
        if state is not None:
            restore_rng_state(state)
            self._resumed_rng_state = None

    def configure_optimizers(self) -> dict[str, Any]:
        missing = [name for name in OPTIMIZER_HPARAMS if name not in self.hparams]
        if missing:
            raise AttributeError(
                f"{type(self).__name__}: configure_optimizers reads the hyperparameters {OPTIMIZER_HPARAMS}, "
                f"but {missing} were not saved (call self.save_hyperparameters() in __init__)"
            )
        optimizer = torch.optim.AdamW(
            no_decay_parameter_groups(self, self.hparams.weight_decay), lr=self.hparams.learning_rate
        )
        total_steps = int(self.trainer.estimated_stepping_batches)
        warmup_steps = int(self.hparams.warmup_ratio * total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(total_steps, warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


__all__ = ["OPTIMIZER_HPARAMS", "EncoderModule"]
