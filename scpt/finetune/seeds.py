"""``scpt finetune seeds``: fine-tune with N seeds, select each on dev, test it, tabulate mean ± std.

    scpt finetune seeds --config configs/finetune/restaurants.yaml --seeds 1 2 3 --output-dir runs/seeds/restaurants

Each seed runs ``fit`` then ``test`` on its best dev checkpoint, in ``<output-dir>/seed<k>/``, and
writes ``result.json`` there; a seed whose result exists is not run again, and a seed that was
interrupted continues from its ``last.ckpt`` in the same run folder, mid-epoch included (then that
``last.ckpt``, kept for resuming only, is deleted; the best checkpoint stays).
``summary.md`` and ``summary.json`` are rebuilt from the per-seed results after every seed.
Options it does not know go to the Lightning CLI for every seed, e.g. ``--trainer.max_epochs 2``,
after its own or after a ``--`` separator (:data:`scpt.finetune.usage.SEEDS_OVERRIDES`).

Seeds must be distinct and in [0, 2**32 - 1] (:func:`check_seeds`). A seed's settings (its configs and
extra arguments) are recorded in ``result.json``, and in ``settings.json`` while it runs; a seed that
ran, or began and left a ``last.ckpt``, with other settings (display-only options such as
``--trainer.enable_progress_bar`` aside) is refused rather than reused or resumed. A ``result.json`` of
an older scpt, without settings, is checked against ``summary.json``'s ``configs`` and ``extra_args``
when that lists the seed, and reused as it is otherwise. A seed that fails removes what it created,
unless it saved a checkpoint (kept, to resume from its ``last.ckpt``); nothing that existed before is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scpt.errors import UserError
from scpt.finetune import usage
from scpt.training.files import read_record, run_group, without_display_args, write_atomically

#: Metrics shown in the summary table, in order (others stay in the JSON).
TABLE_METRICS = ("acc", "macro_f1", "ise_acc", "ese_acc")

#: The seeds Lightning's ``seed_everything`` (NumPy) accepts: 0 to 2**32 - 1.
MIN_SEED, MAX_SEED = 0, 2**32 - 1

#: A seed's result, and the settings of a seed while it runs, in ``<output-dir>/seed<k>/``.
RESULT_FILE, SETTINGS_FILE = "result.json", "settings.json"


def check_seeds(seeds: Sequence[int], where: str) -> None:
    """Refuse an empty list of seeds, a seed that is not an integer, a repeated one, or one outside
    [:data:`MIN_SEED`, :data:`MAX_SEED`].

    Args:
        seeds: the seeds, in the order given.
        where: what the message names first, e.g. ``"--seeds"`` or ``"configs/pipeline/x.yaml: 'seeds'"``.

    Raises:
        UserError: ``<where>: ...``, naming the offending seed.
    """
    if not seeds:
        raise UserError(f"{where}: no seeds given")
    seen: set[int] = set()
    for seed in seeds:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise UserError(f"{where}: seed {seed!r} is not an integer")
        if not MIN_SEED <= seed <= MAX_SEED:
            raise UserError(f"{where}: seed {seed} is out of range [0, 2**32 - 1] (0 to {MAX_SEED})")
        if seed in seen:
            raise UserError(f"{where}: seed {seed} is repeated (each seed runs once)")
        seen.add(seed)


def same_settings(recorded: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Whether two settings (``{"configs": [...], "extra_args": [...]}``) are the same, display options aside."""
    return list(recorded.get("configs") or []) == list(settings["configs"]) and without_display_args(
        recorded.get("extra_args") or []
    ) == without_display_args(settings["extra_args"])


def _command_line(settings: dict[str, Any]) -> str:
    """Settings as the arguments that give them: ``--config a.yaml --trainer.max_epochs 2``."""
    args = [item for path in settings.get("configs") or [] for item in ("--config", str(path))]
    return shlex.join([*args, *(str(arg) for arg in settings.get("extra_args") or [])])


def _recorded_settings(output_dir: Path, seed: int) -> tuple[dict[str, Any], Path] | None:
    """The settings seed ``seed`` ran with, or began with and left a ``last.ckpt`` to resume, and the file
    that records them; ``None`` when it has not run, left nothing to resume, or its ``result.json`` (of an
    older scpt) records no settings and ``summary.json`` does not list it."""
    run_dir = output_dir / f"seed{seed}"
    result_file, settings_file = run_dir / RESULT_FILE, run_dir / SETTINGS_FILE
    summary_file = output_dir / "summary.json"
    if result_file.exists():
        result = read_record(result_file)
        if "configs" in result:
            return result, result_file
        if summary_file.exists():
            summary = read_record(summary_file)
            if any(isinstance(run, dict) and run.get("seed") == seed for run in summary.get("runs") or []):
                return summary, summary_file
        print(f"[seeds] seed {seed}: {result_file} records no settings (an older scpt wrote it); reusing it")
        return None
    if settings_file.exists() and partial_checkpoint(run_dir) is not None:
        return read_record(settings_file), settings_file
    return None


def check_recorded_settings(output_dir: Path, seeds: Sequence[int], settings: dict[str, Any]) -> None:
    """Refuse to reuse or resume a seed of ``output_dir`` that ran with other settings than ``settings``.

    Raises:
        UserError: naming the output dir, the seed, both settings and the file that records the old ones.
    """
    for seed in seeds:
        recorded = _recorded_settings(output_dir, seed)
        if recorded is not None and not same_settings(recorded[0], settings):
            raise UserError(
                f"{output_dir}: seed {seed} ran with other settings ({recorded[1]}): "
                f"recorded `{_command_line(recorded[0])}`, now `{_command_line(settings)}`; "
                f"choose another --output-dir, or remove {output_dir / f'seed{seed}'} to run the seed again"
            )


def _snapshot(directory: Path) -> dict[Path, int]:
    """Every path under ``directory`` (itself included, when it exists) with its modification time."""
    if not directory.exists():
        return {}
    paths = {directory: directory.lstat().st_mtime_ns}
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            path = Path(root) / name
            paths[path] = path.lstat().st_mtime_ns
    return paths


@contextmanager
def no_debris(run_dir: Path, seed: int) -> Iterator[None]:
    """On failure of the block, remove the files and folders it created in ``run_dir`` and the folders above
    it that it created (left empty), unless it saved a checkpoint there (a new or updated ``*.ckpt``): that
    run is kept, and a rerun resumes from its ``last.ckpt``. What existed before is never removed."""
    created_above = [path for path in (run_dir, *run_dir.parents) if not path.exists()]
    before = _snapshot(run_dir)
    try:
        yield
    except BaseException:
        saved = [
            path for path, mtime in _snapshot(run_dir).items() if path.suffix == ".ckpt" and before.get(path) != mtime
        ]
        if saved:
            partial = partial_checkpoint(run_dir)
            resume = f"; a rerun resumes from {partial}" if partial is not None else ""
            print(f"[seeds] seed {seed}: failed; {run_dir} is kept, with the checkpoints it saved{resume}")
            raise
        for path in sorted(_snapshot(run_dir), key=lambda p: len(p.parts), reverse=True):
            if path in before or path == run_dir:
                continue
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            else:
                path.unlink()
        for path in created_above:  # run_dir itself first, then the folders above it, while empty
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise


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
            "(summary.md, summary.json). A seed whose result.json exists is not run again; one that ran with "
            "other configs or arguments is refused."
        ),
        epilog=usage.SEEDS_OVERRIDES
        + "\n\nExample:\n  scpt finetune seeds --config configs/finetune/restaurants.yaml --seeds 1 2 3 "
        "--output-dir runs/seeds/restaurants --trainer.max_epochs 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --seed must not silently mean --seeds, nor a Lightning option one of ours
    )
    parser.add_argument("--config", action="append", required=True, help="Lightning CLI config (repeatable)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1, 2, 3], help="distinct, in [0, 2**32 - 1] (default: 1 2 3)"
    )
    parser.add_argument("--output-dir", type=Path, required=True, help="one seed<k>/ folder per seed, and the summary")
    return parser


def main(argv: list[str]) -> int:
    """``scpt finetune seeds ...``; returns the exit code.

    Raises:
        UserError: a stray positional argument, a bad seed (:func:`check_seeds`), a seed of the output dir
            that ran with other settings (:func:`check_recorded_settings`), or a config without a
            dev-monitoring checkpoint.
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
    check_seeds(args.seeds, "--seeds")
    check_recorded_settings(args.output_dir, args.seeds, {"configs": args.config, "extra_args": passthrough})

    with run_group(f"seeds-{args.output_dir.name}"):  # the seeds' W&B runs side by side (a sweep's group wins)
        return _run_seeds(args, config_args, passthrough)


def _run_seeds(args: argparse.Namespace, config_args: list[str], passthrough: list[str]) -> int:
    """Run (or read) each seed, in the order given, rebuilding the summary after each."""
    settings = {"configs": args.config, "extra_args": passthrough}
    results = []
    for seed in args.seeds:
        run_dir = args.output_dir / f"seed{seed}"
        result_file, settings_file = run_dir / RESULT_FILE, run_dir / SETTINGS_FILE
        if result_file.exists():
            print(f"[seeds] seed {seed}: done before, reading {result_file}")
            result = read_record(result_file)
        else:
            print(f"[seeds] seed {seed}: fine-tuning in {run_dir}")
            with no_debris(run_dir, seed):
                # what a resumed attempt is checked against (check_recorded_settings has refused other settings
                # that left a checkpoint; a stale record with nothing to resume is replaced)
                write_atomically(settings_file, json.dumps(settings, indent=2) + "\n", overwrite=True)
                result = {**run_seed(config_args, seed, run_dir), **settings}
                write_atomically(result_file, json.dumps(result, indent=2) + "\n")
            settings_file.unlink(missing_ok=True)  # result.json records the settings now
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
