"""``scpt pretrain {fit,validate}``: phase 1 through the Lightning CLI.

    scpt pretrain fit --config configs/pretrain/restaurants.yaml

The datamodule's tokenizer follows ``--model.encoder``. ``fit`` prints the last checkpoint, which
phase 2 takes as ``--model.encoder <ckpt>`` (encoder weights only) or which ``scpt export`` turns into
an HF directory.
"""

from __future__ import annotations

import warnings
from typing import Any

from pytorch_lightning.cli import LightningCLI

from scpt.pretrain.datamodule import ContrastivePretrainDataModule
from scpt.pretrain.module import ContrastivePretrainModule


class PretrainCLI(LightningCLI):
    """Lightning CLI for phase 1."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("model.encoder", "data.encoder")

    def before_fit(self) -> None:
        if self.trainer.logger is not None:
            self.trainer.logger.log_hyperparams({"seed_everything": self.config["fit"]["seed_everything"]})

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        if checkpoint is None or not self.trainer.is_global_zero:
            return
        last = checkpoint.last_model_path or checkpoint.best_model_path
        if last:
            print(
                f"pre-trained checkpoint: {last}\n"
                f"fine-tune from it:  scpt finetune fit --config configs/finetune/restaurants.yaml --model.encoder {last}\n"
                f"or export it:       scpt export {last} <directory>"
            )


def build_cli(args: list[str], run: bool = True) -> PretrainCLI:
    """The pre-training CLI on ``args`` (``run=False``: parse and instantiate only)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return PretrainCLI(
            ContrastivePretrainModule,
            ContrastivePretrainDataModule,
            args=args,
            run=run,
            subclass_mode_model=False,
            subclass_mode_data=False,
        )


def main(argv: list[str]) -> int:
    build_cli(argv)
    return 0
