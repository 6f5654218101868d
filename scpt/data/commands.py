"""``scpt data``: download, verify and summarise the ABSA datasets.

    scpt data download [--data-dir DIR] [--base-url URL] [--datasets NAME ...] [--force]
    scpt data verify   [--data-dir DIR] [--datasets NAME ...]
    scpt data stats    [--data-dir DIR] [--datasets NAME ...] [--dev-fraction F] [--seed N]

``--data-dir`` defaults to ``$SCPT_DATA_DIR``. Exit codes: 0 success, 1 ``verify`` found missing or
wrong files, 2 an error (bad arguments, no data directory, a failed download, unreadable data), which
the ``scpt`` console script reports as one line (:mod:`scpt.errors`).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from scpt.data.absa import (
    DATA_DIR_ENV,
    DATASETS,
    DEV_FRACTION,
    POLARITIES,
    SPLIT_SEED,
    SPLITS,
    AspectInstance,
    load_splits,
    resolve_data_dir,
)
from scpt.data.download import (
    DEFAULT_BASE_URL,
    FileResult,
    download,
    summarize,
    verify,
)


def main(argv: Sequence[str]) -> int:
    """Run ``scpt data SUBCOMMAND ...``; returns the exit code.

    Raises:
        DataDirError, DownloadError, DataFormatError, FileNotFoundError: for ``scpt`` to report (exit 2).
    """
    args = _build_parser().parse_args(list(argv))
    return int(args.run(args))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scpt data", description="Download, verify and summarise the ABSA datasets.")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    _add(subparsers, "download", "fetch the release files and check their SHA-256 sums", _download_command)
    _add(subparsers, "verify", "check the files in the data directory against the known sums", _verify_command)
    _add(subparsers, "stats", "print instance counts per dataset and split", _stats_command)
    download_parser = subparsers.choices["download"]
    download_parser.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help="URL of the upstream data folder (default: %(default)s)"
    )
    download_parser.add_argument("--force", action="store_true", help="re-download files that are already present")
    stats_parser = subparsers.choices["stats"]
    stats_parser.add_argument(
        "--dev-fraction",
        type=float,
        default=DEV_FRACTION,
        help="share of SemEval train held out as dev (default: %(default)s)",
    )
    stats_parser.add_argument(
        "--seed", type=int, default=SPLIT_SEED, help="seed of the SemEval dev split (default: %(default)s)"
    )
    return parser


def _add(
    subparsers: argparse._SubParsersAction,
    name: str,
    help_text: str,
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Add a subcommand with the options every subcommand shares."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--data-dir", type=Path, default=None, help=f"data directory (default: ${DATA_DIR_ENV})")
    parser.add_argument(
        "--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS), metavar="NAME",
        help=f"datasets to act on (default: all of {', '.join(DATASETS)})",
    )  # fmt: skip
    parser.set_defaults(run=run)


def _download_command(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    print(f"downloading into {data_dir} from {args.base_url}")

    def report(result: FileResult) -> None:
        print(summarize([result]), flush=True)

    download(data_dir, base_url=args.base_url, datasets=args.datasets, force=args.force, report=report)
    print("all files present with the expected SHA-256 sums")
    return 0


def _verify_command(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    results = verify(data_dir, args.datasets)
    print(summarize(results))
    bad = [result for result in results if result.status != "ok"]
    if bad:
        print(
            f"{len(bad)} of {len(results)} files missing or wrong under {data_dir}; "
            f"run 'scpt data download --data-dir {data_dir}' (add --force to replace wrong files)",
            file=sys.stderr,
        )
        return 1
    print(f"all {len(results)} files verified under {data_dir}")
    return 0


def _stats_command(args: argparse.Namespace) -> int:
    rows = []
    for name in args.datasets:
        splits = load_splits(name, args.data_dir, dev_fraction=args.dev_fraction, seed=args.seed)
        rows += [stats_row(name, split, splits[split], DATASETS[name].implicit_labels) for split in SPLITS]
    print(format_table(STATS_HEADER, rows))
    return 0


STATS_HEADER: tuple[str, ...] = ("dataset", "split", "total", *POLARITIES, "implicit", "explicit")


def stats_row(dataset: str, split: str, instances: Sequence[AspectInstance], implicit_labels: bool) -> list[str]:
    """One row of ``scpt data stats``: counts by polarity and by implicit/explicit (``n/a`` without labels)."""
    polarity = Counter(instance.polarity for instance in instances)
    implicit = Counter(instance.implicit for instance in instances)
    sentiment = [str(implicit[True]), str(implicit[False])] if implicit_labels else ["n/a", "n/a"]
    return [dataset, split, str(len(instances)), *(str(polarity[name]) for name in POLARITIES), *sentiment]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns separated by two spaces; the first two left-aligned, the numbers right-aligned."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join(line(cells) for cells in [header, *rows])
