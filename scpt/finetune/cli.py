"""``scpt finetune {fit,validate,test,predict}``: phase 2 through the Lightning CLI.

``scpt finetune seeds`` (multi-seed runs, :mod:`scpt.finetune.seeds`) is dispatched by
:mod:`scpt.finetune.commands`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import Namespace
from pytorch_lightning.callbacks import BasePredictionWriter

from scpt.finetune.datamodule import AspectSentimentDataModule
from scpt.finetune.module import AspectSentimentModule
from scpt.training.cli import EncoderCLI, build_lightning_cli, parse_lightning_config
from scpt.training.files import write_atomically


class JsonlPredictionWriter(BasePredictionWriter):
    """Writes one JSON line per input: the input, the predicted label and the class probabilities."""

    def __init__(self, output: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.output = Path(output)
        if self.output.exists():
            raise FileExistsError(f"prediction output {self.output} exists; refusing to overwrite it")

    def write_on_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Sequence[Any], batch_indices: Any
    ) -> None:
        instances = trainer.datamodule.predict_instances
        names = pl_module.class_names
        rows = sorted(
            (index, probs)
            for batch in predictions
            for index, probs in zip(batch["index"].tolist(), batch["probs"].tolist())
        )  # input order (batches are length-sorted)
        lines = []
        for index, probs in rows:
            instance = instances[index]
            lines.append(
                json.dumps(
                    {
                        "line": int(instance.sentence_id),
                        "text": instance.text,
                        "aspect": instance.term,
                        "from": instance.start,
                        "to": instance.end,
                        "label": names[max(range(len(probs)), key=probs.__getitem__)],
                        "probs": dict(zip(names, probs)),
                    }
                )
            )
        write_atomically(self.output, "\n".join(lines) + "\n")


class FinetuneCLI(EncoderCLI):
    """Lightning CLI for phase 2."""

    def _require_checkpoint(self) -> None:
        if self.config[self.subcommand].get("ckpt_path") is None:
            raise ValueError(
                f"scpt finetune {self.subcommand} needs --ckpt_path: the fine-tuned checkpoint to evaluate "
                "(fit prints the best one; without it the classifier head would be untrained)"
            )

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_path and self.trainer.is_global_zero:
            print(
                f"best checkpoint ({checkpoint.monitor} = {float(checkpoint.best_model_score):.2f}): "
                f"{checkpoint.best_model_path}\nevaluate it on test with the same config and "
                f"--ckpt_path {checkpoint.best_model_path}"
            )

    def before_test(self) -> None:
        self._require_checkpoint()

    def before_predict(self) -> None:
        self._require_checkpoint()
        output = self.datamodule.hparams.predict_output
        if output is None:
            raise ValueError("predict needs --data.predict_output (the JSON lines file to write)")
        self.trainer.callbacks.append(JsonlPredictionWriter(output))


def build_cli(args: list[str], run: bool = True) -> FinetuneCLI:
    """The fine-tuning CLI on ``args`` (``run=False``: parse and instantiate only)."""
    return build_lightning_cli(FinetuneCLI, AspectSentimentModule, AspectSentimentDataModule, args, run)


def parse_config(args: list[str]) -> Namespace:
    """The fine-tuning configuration of ``args``, read as :func:`build_cli` reads it, nothing instantiated."""
    return parse_lightning_config(FinetuneCLI, AspectSentimentModule, AspectSentimentDataModule, args)


def main(argv: list[str]) -> int:
    """``scpt finetune {fit,validate,test,predict} ...`` through the Lightning CLI."""
    build_cli(argv)
    return 0
