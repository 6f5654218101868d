"""The training layer that both phases build on.

- :mod:`scpt.training.module`: :class:`~scpt.training.module.EncoderModule`, the base LightningModule
  (the HF encoder, AdamW with no-decay groups and linear warmup/decay, the checkpoint's encoder record);
- :mod:`scpt.training.optim`: the parameter groups and the learning-rate schedule;
- :mod:`scpt.training.cli`: the Lightning CLI base of ``scpt pretrain`` and ``scpt finetune``;
- :mod:`scpt.training.files`: atomic file writing for records and tables;
- :mod:`scpt.training.progress`: :class:`~scpt.training.progress.ProgressLog`, progress lines (step, loss,
  samples/s, elapsed, ETA) when stdout is not a terminal.

It sits above :mod:`scpt.losses`, :mod:`scpt.data` and :mod:`scpt.encoders`, and below the two phases
(:mod:`scpt.pretrain`, :mod:`scpt.finetune`), which never import each other.
"""
