"""The ``scpt`` console script.

The top level is a thin dispatcher: each subcommand is a ``module:function`` that receives the rest of
the command line and owns its parsing. This lets the phase subcommands hand their arguments straight to
the Lightning CLI (``scpt finetune fit --config ...``) while small utilities use argparse, and it keeps
``scpt --help`` fast because no subcommand module is imported until it runs. The phase commands'
own help (``scpt finetune --help``) comes from their light ``usage`` modules, so it is instant too;
only a subcommand's help (``scpt finetune fit --help``) builds the Lightning CLI.

Errors: a command raises, this module reports. An expected failure (:mod:`scpt.errors`) prints one
line, ``scpt COMMAND: error: ...``, and exits 2; anything else keeps its traceback. ``--traceback``
anywhere on the command line, or ``SCPT_DEBUG=1``, shows the traceback of every failure.

A new subcommand is one entry in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from scpt import __version__
from scpt.errors import DEBUG_ENV, TRACEBACK_FLAG, debug_requested, report


@dataclass(frozen=True)
class Command:
    """A subcommand: one line of help and the ``module:function`` that runs it.

    The function takes the remaining arguments (``list[str]``) and returns a process exit code.
    """

    help: str
    target: str
    #: A light module (no torch, no Lightning) with ``PROG``, ``DESCRIPTION``, ``SUBCOMMANDS`` (name -> help)
    #: and ``EPILOG``: the command's own help, and the subcommands it accepts, without loading the command.
    usage: str | None = None
    #: The command's subcommands, for the error prefix (``scpt data download: error: ...``), when no usage.
    subcommands: tuple[str, ...] = ()

    def load(self) -> Callable[[list[str]], int]:
        module_name, function_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), function_name)

    def usage_module(self) -> ModuleType | None:
        return None if self.usage is None else importlib.import_module(self.usage)

    def subcommand_names(self) -> tuple[str, ...]:
        usage = self.usage_module()
        return tuple(usage.SUBCOMMANDS) if usage is not None else self.subcommands


def env_command(argv: list[str]) -> int:
    """Print the versions and settings that matter when reporting a problem."""
    parser = argparse.ArgumentParser(
        prog="scpt env", description="Print scpt's environment: versions, threads, data location."
    )
    parser.parse_args(argv)
    import torch

    rows = {
        "scpt": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "cuda available": str(torch.cuda.is_available()),
    }
    for name in ("pytorch_lightning", "transformers", "torchmetrics", "jsonargparse"):
        try:
            rows[name] = importlib.import_module(name).__version__
        except ImportError:
            rows[name] = "not installed"
    rows["SCPT_DATA_DIR"] = os.environ.get("SCPT_DATA_DIR", "(unset)")
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")
    return 0


COMMANDS: dict[str, Command] = {
    "env": Command("print versions, threads and the data location (for bug reports)", "scpt.cli:env_command"),
    "data": Command(
        "download, verify and count the ABSA datasets (SemEval-2014, MAMS)",
        "scpt.data.commands:main",
        subcommands=("download", "verify", "stats"),
    ),
    "finetune": Command(
        "phase 2, aspect sentiment: {fit,validate,test,predict} (Lightning CLI), or 'seeds' for multi-seed runs",
        "scpt.finetune.commands:main",
        usage="scpt.finetune.usage",
    ),
    "pretrain": Command(
        "phase 1, supervised contrastive pre-training: {fit,validate} (Lightning CLI)",
        "scpt.pretrain.cli:main",
        usage="scpt.pretrain.usage",
    ),
    "export": Command("write a checkpoint's encoder as an HF directory: scpt export CKPT DIR", "scpt.export:main"),
    "pipeline": Command(
        "pre-train, then fine-tune with and without it on the same seeds, and tabulate (resumable)",
        "scpt.pipeline:main",
    ),
    "sweep": Command(
        "hyper-parameter sweeps from a W&B sweep file, without a server (Optuna; resumable), and 'report'",
        "scpt.sweep.commands:main",
        subcommands=("report",),
    ),
    "figures": Command("redraw the experiments' figures from their committed run records", "scpt.figures:main"),
}


def _build_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<10} {command.help}" for name, command in COMMANDS.items()]
    parser = argparse.ArgumentParser(
        prog="scpt",
        description=(
            "Supervised contrastive pre-training of text encoders and aspect-based sentiment "
            "fine-tuning, on PyTorch Lightning."
        ),
        epilog="commands:\n"
        + "\n".join(lines)
        + "\n\nRun 'scpt COMMAND --help' for a command's options. A failure a user can fix prints one line "
        f"and exits 2;\n{TRACEBACK_FLAG} (anywhere on the command line) or {DEBUG_ENV}=1 shows its traceback.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"scpt {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


_HELP_WIDTH = 100


def phase_help(usage: ModuleType) -> str:
    """The help of a command with subcommands (``scpt finetune --help``), from its ``usage`` module."""
    names = list(usage.SUBCOMMANDS)
    width = max(map(len, names))
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, text in usage.SUBCOMMANDS.items())
    paragraphs = [
        f"usage: {usage.PROG} {{{','.join(names)}}} [options]",
        textwrap.fill(usage.DESCRIPTION, _HELP_WIDTH),
        f"subcommands:\n{rows}",
        f"Run '{usage.PROG} SUBCOMMAND --help' for its options (it loads the model code: a few seconds).",
        *(
            text if "\n" in text else textwrap.fill(text, _HELP_WIDTH, subsequent_indent="  ")
            for text in usage.EPILOG.split("\n\n")
        ),
    ]
    return "\n\n".join(paragraphs) + "\n"


def _dispatch(command: Command, args: list[str]) -> int:
    usage = command.usage_module()
    if usage is not None:
        if not args or args[0] in ("-h", "--help"):
            print(phase_help(usage), end="")
            return 0 if args else 2
        if not args[0].startswith("-") and args[0] not in usage.SUBCOMMANDS:
            choices = ", ".join(usage.SUBCOMMANDS)
            print(f"{usage.PROG}: error: unknown subcommand '{args[0]}' (choose from {choices})", file=sys.stderr)
            return 2
    return command.load()(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scpt`` console script; returns the exit code.

    Expected failures (:func:`scpt.errors.expected_cause`) print one line and return 2; other exceptions
    propagate with their traceback, as every failure does with ``--traceback`` or ``SCPT_DEBUG=1``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [arg for arg in argv if arg != TRACEBACK_FLAG]
    parser = _build_parser()
    if not argv:
        parser.print_help()
        return 2
    namespace = parser.parse_args(argv[:1]) if argv[0] in COMMANDS else parser.parse_args(argv)
    command, args = COMMANDS[namespace.command], argv[1:]
    prefix = f"scpt {namespace.command}"
    if args and args[0] in command.subcommand_names():
        prefix += f" {args[0]}"
    try:
        return _dispatch(command, args)
    except Exception as error:
        code = report(prefix, error, debug)
        if code is None:
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
