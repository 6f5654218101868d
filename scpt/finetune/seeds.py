"""``scpt finetune seeds``: fine-tune with N seeds, select each on dev, test it, tabulate mean ± std.

    scpt finetune seeds --config configs/finetune/restaurants.yaml --seeds 1 2 3 --output-dir runs/seeds/restaurants

Each seed runs ``fit`` then ``test`` on its best dev checkpoint, in ``<output-dir>/seed<k>/``, and
writes ``result.json`` there; a seed whose result exists is not run again, and a seed that was
interrupted continues from its ``last.ckpt`` in the same run folder, mid-epoch included (then that
``last.ckpt``, kept for resuming only, is deleted; the best checkpoint stays).
``summary.md`` and ``summary.json`` are rebuilt from the per-seed results after every seed.
Options it does not know go to the Lightning CLI for every seed, e.g. ``--trainer.max_epochs 2``,
after its own or after a ``--`` separator (:data:`scpt.finetune.usage.SEEDS_OVERRIDES`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from scpt.errors import UserError
from scpt.finetune import usage
from scpt.training.files import run_group, write_atomically

#: Metrics shown in the summary table, in order (others stay in the JSON).
TABLE_METRICS = ("acc", "macro_f1", "ise_acc", "ese_acc")


def partial_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``last.ckpt`` under ``run_dir``: where an interrupted run of this seed stopped, or None."""
    partial = sorted(run_dir.glob("**/checkpoints/last.ckpt"), key=lambda path: path.stat().st_mtime)
    return partial[-1] if partial else None


def run_seed(config_args: list[str], seed: int, run_dir: Path) -> dict[str, Any]:
    """Fit with ``seed`` (continuing an interrupted attempt from its ``last.ckpt``, in its run folder), test
    the best dev checkpoint, and return the result record."""
    from scpt.finetune.cli import build_cli  # Lightning: imported when a seed runs, not for --help
    from scpt.training.resume import continue_in_run_folder

    started = time.perf_counter()
    cli = build_cli(
        [
            *config_args,
            f"--seed_everything={seed}",
            f"--trainer.default_root_dir={run_dir}",
            f"--trainer.logger.init_args.save_dir={run_dir}",  # CSV, TensorBoard and W&B loggers all take it
        ],
        run=False,
    )
    resume = partial_checkpoint(run_dir)
    if resume is not None:
        print(f"[seeds] seed {seed}: resuming from {resume}")
    continue_in_run_folder(cli.trainer, resume)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resume, weights_only=True)
    checkpoint = cli.trainer.checkpoint_callback
    if checkpoint is None or not checkpoint.best_model_path:
        raise UserError("no best checkpoint was saved: the config needs a ModelCheckpoint monitoring a dev metric")
    tested = cli.trainer.test(
        cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint.best_model_path, weights_only=True
    )
    validated = cli.trainer.validate(  # the selected checkpoint's dev metrics, for sweeps (never select on test)
        cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint.best_model_path, weights_only=True
    )
    return {
        "seed": seed,
        "best_checkpoint": checkpoint.best_model_path,
        "selected_on": checkpoint.monitor,
        "dev_score": float(checkpoint.best_model_score),
        "test": {key.removeprefix("test/"): float(value) for key, value in tested[0].items()},
        "dev": {key.removeprefix("val/"): float(value) for key, value in validated[0].items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Mean, sample standard deviation (``None`` for a single seed) and count of every test metric."""
    keys = sorted({key for result in results for key in result["test"]})
    summary = {}
    for key in keys:
        values = [result["test"][key] for result in results if key in result["test"]]
        std = statistics.stdev(values) if len(values) > 1 else None
        summary[key] = {"mean": statistics.fmean(values), "std": std, "n": len(values)}
    return summary


def _mean_std(entry: dict[str, float | None]) -> str:
    return f"{entry['mean']:.2f}" if entry["std"] is None else f"{entry['mean']:.2f} ± {entry['std']:.2f}"


def markdown_table(results: list[dict[str, Any]], summary: dict[str, dict[str, float]]) -> str:
    """Per-seed rows and a mean ± std row for :data:`TABLE_METRICS` (those present)."""
    metrics = [m for m in TABLE_METRICS if m in summary]
    lines = [
        "| seed | " + " | ".join(metrics) + " | dev score | minutes |",
        "|---|" + "---|" * len(metrics) + "---|---|",
    ]
    for result in results:
        cells = [f"{result['test'][m]:.2f}" if m in result["test"] else "n/a" for m in metrics]
        lines.append(
            f"| {result['seed']} | "
            + " | ".join(cells)
            + f" | {result['dev_score']:.2f} | {result['seconds'] / 60:.1f} |"
        )
    means = [f"**{_mean_std(summary[m])}**" for m in metrics]
    lines.append("| mean ± std | " + " | ".join(means) + " | | |")
    return "\n".join(lines) + "\n"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{usage.PROG} seeds",
        description=(
            "Fine-tune with each seed, select its best dev checkpoint, test it, and tabulate mean ± std "
            "(summary.md, summary.json). A seed whose result.json exists is not run again."
        ),
        epilog=usage.SEEDS_OVERRIDES
        + "\n\nExample:\n  scpt finetune seeds --config configs/finetune/restaurants.yaml --seeds 1 2 3 "
        "--output-dir runs/seeds/restaurants --trainer.max_epochs 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --seed must not silently mean --seeds, nor a Lightning option one of ours
    )
    parser.add_argument("--config", action="append", required=True, help="Lightning CLI config (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="(default: 1 2 3)")
    parser.add_argument("--output-dir", type=Path, required=True, help="one seed<k>/ folder per seed, and the summary")
    return parser


def main(argv: list[str]) -> int:
    """``scpt finetune seeds ...``; returns the exit code.

    Raises:
        UserError: a stray positional argument, or a config without a dev-monitoring checkpoint.
    """
    if "--" in argv:
        split = argv.index("--")
        argv, passthrough = argv[:split], argv[split + 1 :]
    else:
        passthrough = []
    args, unknown = _build_parser().parse_known_args(argv)
    if unknown and not unknown[0].startswith("-"):
        raise UserError(f"unexpected argument {unknown[0]!r} (Lightning CLI options start with --)")
    passthrough = unknown + passthrough
    config_args = [item for path in args.config for item in ("--config", path)] + passthrough

    with run_group(f"seeds-{args.output_dir.name}"):  # the seeds' W&B runs side by side (a sweep's group wins)
        return _run_seeds(args, config_args, passthrough)


def _run_seeds(args: argparse.Namespace, config_args: list[str], passthrough: list[str]) -> int:
    results = []
    for seed in args.seeds:
        run_dir = args.output_dir / f"seed{seed}"
        result_file = run_dir / "result.json"
        if result_file.exists():
            print(f"[seeds] seed {seed}: done before, reading {result_file}")
            result = json.loads(result_file.read_text())
        else:
            print(f"[seeds] seed {seed}: fine-tuning in {run_dir}")
            result = run_seed(config_args, seed, run_dir)
            write_atomically(result_file, json.dumps(result, indent=2) + "\n")
            for last in run_dir.glob("**/checkpoints/last.ckpt"):  # kept for resuming only; the best stays
                last.unlink()
        results.append(result)
        summary = summarize(results)
        table = markdown_table(results, summary)
        write_atomically(args.output_dir / "summary.md", table, overwrite=True)
        write_atomically(
            args.output_dir / "summary.json",
            json.dumps(
                {"configs": args.config, "extra_args": passthrough, "runs": results, "summary": summary}, indent=2
            )
            + "\n",
            overwrite=True,
        )
    print(table, end="")
    return 0
