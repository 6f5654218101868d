"""The Lightning CLI base of both phases (``scpt pretrain ...``, ``scpt finetune ...``)."""

from __future__ import annotations

import warnings
from typing import Any

import pytorch_lightning as pl
from jsonargparse import Namespace
from pytorch_lightning.cli import LightningCLI


class EncoderCLI(LightningCLI):
    """Lightning CLI of both phases: the datamodule's tokenizer follows ``--model.encoder``, and the
    seed reaches the logger next to the module's hyperparameters."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("model.encoder", "data.encoder")

    def before_fit(self) -> None:
        if self.trainer.logger is not None:
            self.trainer.logger.log_hyperparams({"seed_everything": self.config["fit"]["seed_everything"]})


#: How config files and values are read: YAML through OmegaConf, so a config can reference another
#: of its values (``default_root_dir: runs/${data.dataset}``); resolved within each file.
PARSER_MODE = "omegaconf"


def parser_kwargs(cli_class: type[LightningCLI]) -> dict[str, Any]:
    """Parser settings for the main parser and every subcommand's (``fit``, ``validate``, ...)."""
    return {"parser_mode": PARSER_MODE, **{name: {"parser_mode": PARSER_MODE} for name in cli_class.subcommands()}}


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
        return cli_class(
            model,
            data,
            args=args,
            run=run,
            subclass_mode_model=False,
            subclass_mode_data=False,
            parser_kwargs=parser_kwargs(cli_class),
        )


class _Parsed(Exception):
    """Carries a parsed configuration out of a CLI that stops before instantiating anything."""

    def __init__(self, config: Namespace) -> None:
        super().__init__("configuration parsed")
        self.config = config


def parse_lightning_config(
    cli_class: type[LightningCLI],
    model: type[pl.LightningModule],
    data: type[pl.LightningDataModule],
    args: list[str],
) -> Namespace:
    """The configuration that ``build_lightning_cli(cli_class, model, data, args, run=False)`` would use:
    every ``--config`` file and argument read, interpolated, linked and validated by the same parser,
    but nothing instantiated, seeded or loaded.

    Raises:
        SystemExit: the arguments do not parse (the parser prints why), as on the command line.
    """

    class ParseOnly(cli_class):  # type: ignore[misc, valid-type]
        def parse_arguments(self, parser: Any, args: Any) -> None:
            super().parse_arguments(parser, args)
            raise _Parsed(self.config)

    try:
        build_lightning_cli(ParseOnly, model, data, args, run=False)
    except _Parsed as parsed:
        return parsed.config
    raise AssertionError("unreachable: the CLI returned without parsing its arguments")  # pragma: no cover


__all__ = ["PARSER_MODE", "EncoderCLI", "build_lightning_cli", "parse_lightning_config", "parser_kwargs"]
