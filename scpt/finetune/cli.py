"""``scpt finetune {fit,validate,test,predict}`` (Lightning CLI) and ``scpt finetune seeds`` (multi-seed runs)."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.cli import LightningCLI

from scpt.finetune.datamodule import AspectSentimentDataModule
from scpt.finetune.module import AspectSentimentModule


def write_atomically(path: Path, text: str, overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``; refuse to clobber unless asked."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (remove it or choose another path)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


class EncoderCLI(LightningCLI):
    """Lightning CLI of both phases: the datamodule's tokenizer follows ``--model.encoder``, and the
    seed reaches the logger next to the module's hyperparameters."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("model.encoder", "data.encoder")

    def before_fit(self) -> None:
        if self.trainer.logger is not None:
            self.trainer.logger.log_hyperparams({"seed_everything": self.config["fit"]["seed_everything"]})


def build_lightning_cli(
    cli_class: type[LightningCLI], model: type[pl.LightningModule], data: type[pl.LightningDataModule], args: list[str], run: bool
) -> LightningCLI:
    """``cli_class(model, data)`` on ``args`` (``run=False``: parse and instantiate only)."""
    with warnings.catch_warnings():
        # scpt always passes args explicitly; Lightning warns when sys.argv differs.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return cli_class(model, data, args=args, run=run, subclass_mode_model=False, subclass_mode_data=False)


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


def main(argv: list[str]) -> int:
    """``scpt finetune ...``: ``seeds`` runs the multi-seed runner, anything else goes to the Lightning CLI."""
    if argv and argv[0] == "seeds":
        from scpt.finetune.seeds import main as seeds_main

        return seeds_main(argv[1:])
    build_cli(argv)
    return 0
