"""The Lightning CLI base of both phases (``scpt pretrain ...``, ``scpt finetune ...``)."""

from __future__ import annotations

import warnings
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI


class EncoderCLI(LightningCLI):
    """Lightning CLI of both phases: the datamodule's tokenizer follows ``--model.encoder``, and the
    seed reaches the logger next to the module's hyperparameters."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("model.encoder", "data.encoder")

    def before_fit(self) -> None:
        if self.trainer.logger is not None:
            self.trainer.logger.log_hyperparams({"seed_everything": self.config["fit"]["seed_everything"]})


def build_lightning_cli(
    cli_class: type[LightningCLI],
    model: type[pl.LightningModule],
    data: type[pl.LightningDataModule],
    args: list[str],
    run: bool,
) -> LightningCLI:
    """``cli_class(model, data)`` on ``args`` (``run=False``: parse and instantiate only)."""
    with warnings.catch_warnings():
        # scpt always passes args explicitly; Lightning warns when sys.argv differs.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return cli_class(model, data, args=args, run=run, subclass_mode_model=False, subclass_mode_data=False)


__all__ = ["EncoderCLI", "build_lightning_cli"]
