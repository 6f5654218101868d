"""``scpt sweep FILE [options]`` and ``scpt sweep report FILE|DIR``: the command line (argparse only;
Optuna and matplotlib are imported when a command runs, so ``--help`` is instant)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scpt.errors import UserError

EPILOG = """\
Each trial runs the file's command as a subprocess in <output-dir>/trial_<k>/ (log: trial.log), with
$SCPT_TRIAL_RESULT naming the result.json where scpt writes the run's final metrics. Trials are kept in an
Optuna study (default: <output-dir>/study.db); rerunning the command resumes: finished trials are not rerun,
killed ones (no heartbeat for 2 x --heartbeat seconds) are retried. Several processes or machines share a
sweep through one --storage URL (sqlite:///shared/disk/study.db, postgresql://user@host/db).

examples:
  scpt sweep configs/sweeps/pretrain_dscl_tau_alpha.yaml
  scpt sweep configs/sweeps/pretrain_dscl_tau_alpha.yaml --workers 2 --max-trials 4
  scpt sweep configs/sweeps/pretrain_dscl_tau_alpha.yaml --output-dir runs/sweeps/short -- --trainer.max_steps=40
  (arguments after -- join every trial's command; a study keeps the ones it began with)
  scpt sweep report runs/sweeps/pretrain_dscl_tau_alpha
The same file runs under W&B: wandb sweep FILE, then wandb agent ENTITY/PROJECT/SWEEP_ID."""

REPORT_EPILOG = """\
Writes trials.csv, trials.md (every trial: number, state, parameters, metric, seconds, error), best.json and
heatmap.png (the first two swept parameters -> the metric; failed cells marked) into the sweep's directory
(or --output-dir), and logs the table and the heatmap to W&B in the sweep's group when W&B is on
(wandb installed and WANDB_MODE not 'disabled'; --no-wandb to skip)."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scpt sweep",
        usage="scpt sweep FILE [options] [-- ARGS for every trial]\n       scpt sweep report FILE|DIR [options]",
        description="Run a W&B-format sweep file without a W&B server: grid, random or bayes (Optuna), resumable.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("file", type=Path, help="the sweep file (configs/sweeps/*.yaml), W&B's sweep format")
    parser.add_argument("--study-name", help="the Optuna study (default: the file's name, or its stem)")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<output-dir>/study.db)")
    parser.add_argument("--output-dir", type=Path, help="trial directories and the study (default: runs/sweeps/NAME)")
    parser.add_argument("--workers", type=_positive_int, default=1, help="trials run at once (default: 1)")
    parser.add_argument("--max-trials", type=_positive_int, help="start at most this many trials in this call")
    parser.add_argument("--timeout", type=_positive_float, help="start no trial after this many seconds")
    parser.add_argument(
        "--retry-failed", action="store_true", help="run again the points whose trials failed (not only killed ones)"
    )
    parser.add_argument(
        "--no-run-dir-args",
        dest="run_dir_args",
        action="store_false",
        help="do not append --trainer.default_root_dir=<trial dir> --trainer.logger.init_args.save_dir=<trial dir>",
    )
    parser.add_argument(
        "--heartbeat", type=_positive_int, default=60, help="seconds between a running trial's heartbeats (default 60)"
    )
    parser.add_argument("--seed", type=int, help="the sampler's seed (random, bayes; grid's order)")
    return parser


def build_report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scpt sweep report",
        description="Tabulate a sweep's trials, name the best configuration and draw a heatmap.",
        epilog=REPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "source", type=Path, nargs="?", help="the sweep file, or the sweep's output directory (holding study.db)"
    )
    parser.add_argument("--study-name", help="the study (default: the file's name, or the only study in the storage)")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<sweep dir>/study.db)")
    parser.add_argument("--output-dir", type=Path, help="where the report goes (default: the sweep's directory)")
    parser.add_argument("--no-wandb", dest="wandb", action="store_false", help="do not log the report to W&B")
    return parser


def run_sweep(argv: list[str]) -> int:
    """``scpt sweep FILE ...``: run the sweep's trials; returns 0 (failed trials are recorded, not raised).

    Raises:
        UserError: a bad sweep file, a random or bayes sweep without a bound, an unusable storage.
    """
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    args = build_parser().parse_args(argv)
    from scpt.sweep.runner import (
        SweepOptions,
        SweepRunner,
        default_output_dir,
        default_storage,
        open_study,
        summary_lines,
    )
    from scpt.sweep.spec import load_sweep

    spec = load_sweep(args.file)
    if spec.method != "grid" and args.max_trials is None and args.timeout is None and spec.run_cap is None:
        raise UserError(
            f"{spec.path}: a {spec.method} sweep has no end: give --max-trials or --timeout (or run_cap in the file)"
        )
    study_name = args.study_name or spec.name
    output_dir = args.output_dir or default_output_dir(study_name)
    options = SweepOptions(
        output_dir=output_dir,
        study_name=study_name,
        storage=args.storage or default_storage(output_dir),
        workers=args.workers,
        max_trials=args.max_trials,
        timeout=args.timeout,
        heartbeat=args.heartbeat,
        run_dir_args=args.run_dir_args,
        retry_failed=args.retry_failed,
        seed=args.seed,
        extra_args=tuple(extra),
    )
    created = [path for path in (output_dir, *output_dir.parents) if not path.exists()]
    output_dir.mkdir(parents=True, exist_ok=True)  # the default storage is a SQLite file in it
    try:
        study = open_study(spec, options)
    except BaseException:  # a storage that cannot be opened: leave no empty output directory behind
        for path in created:
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise
    print(
        f"[sweep] {spec.method} sweep '{study_name}' of {spec.path}: {spec.metric} ({spec.goal}); "
        f"study in {options.storage}; trials in {output_dir}",
        flush=True,
    )
    try:
        SweepRunner(spec, study, options).run()
    except KeyboardInterrupt:
        print("[sweep] interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    for line in summary_lines(study, spec):
        print(line)
    print(f"[sweep] report: scpt sweep report {output_dir}" + (f" --storage {args.storage}" if args.storage else ""))
    return 0


def run_report(argv: list[str]) -> int:
    """``scpt sweep report ...``: write the report files; returns 0."""
    args = build_report_parser().parse_args(argv)
    from scpt.sweep.report import write_report

    paths = write_report(args.source, args.study_name, args.storage, args.output_dir, use_wandb=args.wandb)
    for path in paths:
        print(f"[sweep report] wrote {path}")
    return 0


def main(argv: list[str]) -> int:
    """``scpt sweep``: ``report`` as first argument runs the report, anything else a sweep."""
    if argv and argv[0] == "report":
        return run_report(argv[1:])
    return run_sweep(argv)


__all__ = ["build_parser", "build_report_parser", "main", "run_report", "run_sweep"]
