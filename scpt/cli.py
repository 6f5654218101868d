"""The ``scpt`` console script.

The top level is a thin dispatcher: each subcommand is a ``module:function`` that receives the rest of
the command line and owns its parsing. This lets the phase subcommands hand their arguments straight to
the Lightning CLI (``scpt finetune fit --config ...``) while small utilities use argparse, and it keeps
``scpt --help`` fast because no subcommand module is imported until it runs.

A new subcommand is one entry in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scpt import __version__


@dataclass(frozen=True)
class Command:
    """A subcommand: one line of help and the ``module:function`` that runs it.

    The function takes the remaining arguments (``list[str]``) and returns a process exit code.
    """

    help: str
    target: str

    def load(self) -> Callable[[list[str]], int]:
        module_name, function_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), function_name)


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
    "data": Command("download, verify and count the ABSA datasets (SemEval-2014, MAMS)", "scpt.data.commands:main"),
    "finetune": Command(
        "phase 2, aspect sentiment: {fit,validate,test,predict} (Lightning CLI), or 'seeds' for multi-seed runs",
        "scpt.finetune.commands:main",
    ),
    "pretrain": Command(
        "phase 1, supervised contrastive pre-training: {fit,validate} (Lightning CLI)", "scpt.pretrain.cli:main"
    ),
    "export": Command("write a checkpoint's encoder as an HF directory: scpt export CKPT DIR", "scpt.export:main"),
    "pipeline": Command(
        "pre-train, then fine-tune with and without it on the same seeds, and tabulate (resumable)",
        "scpt.pipeline:main",
    ),
}


def _build_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<10} {command.help}" for name, command in COMMANDS.items()]
    parser = argparse.ArgumentParser(
        prog="scpt",
        description=(
            "Supervised contrastive pre-training of text encoders and aspect-based sentiment "
            "fine-tuning, on PyTorch Lightning."
        ),
        epilog="commands:\n" + "\n".join(lines) + "\n\nRun 'scpt COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"scpt {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scpt`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    if not argv:
        parser.print_help()
        return 2
    namespace = parser.parse_args(argv[:1]) if argv[0] in COMMANDS else parser.parse_args(argv)
    return COMMANDS[namespace.command].load()(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
