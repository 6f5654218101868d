"""``scpt pretrain {fit,validate}``: phase 1 through the Lightning CLI.

    scpt pretrain fit --config configs/pretrain/restaurants.yaml

The datamodule's tokenizer follows ``--model.encoder``. ``fit`` prints the last checkpoint, which
phase 2 takes as ``--model.encoder <ckpt>`` (encoder weights only) or which ``scpt export`` turns into
an HF directory.
"""

from __future__ import annotations

from jsonargparse import Namespace

from scpt.pretrain import usage
from scpt.pretrain.datamodule import ContrastivePretrainDataModule
from scpt.pretrain.module import ContrastivePretrainModule
from scpt.training.cli import EncoderCLI, build_lightning_cli, parse_lightning_config


class PretrainCLI(EncoderCLI):
    """Lightning CLI for phase 1: ``fit`` and ``validate`` (the module has no test or predict step)."""

    prog = usage.PROG
    description = usage.DESCRIPTION

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: skip for name, skip in EncoderCLI.subcommands().items() if name in usage.SUBCOMMANDS}

    def after_fit(self) -> None:
        super().after_fit()
        checkpoint = self.trainer.checkpoint_callback
        if not self.trainer.is_global_zero:
            return
        if checkpoint is None:
            if self.trainer.fast_dev_run:
                print("fast_dev_run: no checkpoint written")
            return
        last = checkpoint.last_model_path or checkpoint.best_model_path
        if last:
            print(
                f"pre-trained checkpoint: {last}\n"
                "fine-tune from it:  scpt finetune fit --config configs/finetune/restaurants.yaml "
                f"--model.encoder {last}\n"
                f"or export it:       scpt export {last} <directory>"
            )


def build_cli(args: list[str], run: bool = True) -> PretrainCLI:
    """The pre-training CLI on ``args`` (``run=False``: parse and instantiate only)."""
    return build_lightning_cli(PretrainCLI, ContrastivePretrainModule, ContrastivePretrainDataModule, args, run)


def parse_config(args: list[str]) -> Namespace:
    """The pre-training configuration of ``args``, read as :func:`build_cli` reads it, nothing instantiated."""
    return parse_lightning_config(PretrainCLI, ContrastivePretrainModule, ContrastivePretrainDataModule, args)


def main(argv: list[str]) -> int:
    """``scpt pretrain {fit,validate} ...`` through the Lightning CLI."""
    build_cli(argv)
    return 0
