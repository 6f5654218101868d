"""``scpt finetune {fit,validate,test,predict}``: phase 2 through the Lightning CLI.

``scpt finetune seeds`` (multi-seed runs, :mod:`scpt.finetune.seeds`) is dispatched by
:mod:`scpt.finetune.commands`. ``predict`` writes only the file it is given (no run directory, no
logger) and prints where.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import Namespace
from pytorch_lightning.callbacks import BasePredictionWriter

from scpt.errors import UserError
from scpt.finetune import usage
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
        if not trainer.is_global_zero:  # under DDP every process predicts every input; one writes them
            return
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


def check_utf8_lines(path: str | Path) -> None:
    """Raise :class:`UserError` naming the line and column of the first byte of ``path`` that is not UTF-8.

    Raises:
        UserError: the file is missing, or not UTF-8 text.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"predict input {path} does not exist (--data.predict_file)")
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise UserError(
                    f"{path}, line {number}: not UTF-8 text (byte 0x{line[error.start]:02x} at column "
                    f"{error.start + 1}); save the file as UTF-8"
                ) from None


class FinetuneCLI(EncoderCLI):
    """Lightning CLI for phase 2."""

    prog = usage.PROG
    description = usage.DESCRIPTION

    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        for action in parser._actions:
            if "--data.predict_file" in action.option_strings:
                action.help = f"predict input: {usage.PREDICT_INPUT}"
            elif "--data.predict_output" in action.option_strings:
                action.help = usage.PREDICT_OUTPUT

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        if self.subcommand != "predict":
            return super().instantiate_trainer(**kwargs)
        # predict writes --data.predict_output and nothing else: no logger, no saved config, no run folder
        save_config_callback, self.save_config_callback = self.save_config_callback, None
        try:
            return super().instantiate_trainer(**{**kwargs, "logger": False})
        finally:
            self.save_config_callback = save_config_callback

    def _require_checkpoint(self) -> None:
        if self.config[self.subcommand].get("ckpt_path") is None:
            raise UserError(
                "--ckpt_path is required: the fine-tuned checkpoint to evaluate "
                "(fit prints the best one; without it the classifier head would be untrained)"
            )

    def after_fit(self) -> None:
        super().after_fit()
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
        hparams = self.datamodule.hparams
        if hparams.predict_file is None:
            raise UserError(f"predict needs --data.predict_file: {usage.PREDICT_INPUT}")
        if hparams.predict_output is None:
            raise UserError("predict needs --data.predict_output (the JSON lines file to write)")
        check_utf8_lines(hparams.predict_file)
        self.trainer.callbacks.append(JsonlPredictionWriter(hparams.predict_output))

    def after_predict(self) -> None:
        if self.trainer.is_global_zero:
            output = Path(self.datamodule.hparams.predict_output)
            count = len(self.datamodule.predict_instances)
            print(f"wrote {count} prediction{'s' * (count != 1)} to {output}")


def build_cli(args: list[str], run: bool = True) -> FinetuneCLI:
    """The fine-tuning CLI on ``args`` (``run=False``: parse and instantiate only)."""
    return build_lightning_cli(FinetuneCLI, AspectSentimentModule, AspectSentimentDataModule, args, run)


def parse_config(args: list[str]) -> Namespace:
    """The fine-tuning configuration of ``args``, read as :func:`build_cli` reads it, nothing instantiated."""
    return parse_lightning_config(FinetuneCLI, AspectSentimentModule, AspectSentimentDataModule, args)


def main(argv: list[str]) -> int:
    """``scpt finetune {fit,validate,test,predict} ...`` through the Lightning CLI.

    Raises:
        UserError: the arguments or the config are wrong (unknown key, bad value, missing file).
    """
    build_cli(argv)
    return 0
