"""Paired comparison of fine-tuning arms run on the same seeds (``scpt finetune seeds`` summaries).

    python experiments/scapt_restaurants/compare.py \\
        full=runs/pipeline/restaurants/finetune/pretrained direct=runs/pipeline/restaurants/finetune/direct \\
        no_scl=runs/ablation/no_scl/finetune

Prints, for test accuracy, macro-F1, ISE and ESE accuracy: mean ± sample std per arm over the seeds
all arms share, and for every pair of arms in the order given the paired per-seed difference
(mean ± std): ``full − direct``, ``full − no_scl``, ``direct − no_scl`` for the command above.

An arm may pool several directories, comma-separated (one per pre-training seed): its runs are then keyed
by (directory position, fine-tuning seed), so ``full=A7,A8 no_scl=B7,B8 direct=D,D`` pairs full and no_scl
within each pre-training seed, and each with the same direct run. Pooled arms must list equally many. An arm's
own row counts a directory listed twice once (the direct arm's std is over its 3 runs, not 6 copies).

Pooled runs are nested: the fine-tuning seeds of one position share its pre-trained encoder, so they are
not independent replicates of pre-training. A second table then takes the pre-training run as the unit:
each position's mean over its fine-tuning seeds, and over the P positions their mean ± sample std with the
two-sided 95% Student t interval on P − 1 degrees of freedom, mean ± t(0.975, P − 1) · std / sqrt(P)
(:func:`scpt.training.stats.t_interval`, the interval ``scpt pipeline`` reports with ``pretrain_seeds``).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

from scpt.training.stats import t_interval

METRICS = (("acc", "accuracy"), ("macro_f1", "macro-F1"), ("ise_acc", "ISE accuracy"), ("ese_acc", "ESE accuracy"))

Key = tuple[int, int]  # (position of the directory in the comma-separated list, fine-tuning seed)
Runs = dict[Key, dict[str, float]]


def load(directories: str) -> tuple[Runs, set[int]]:
    """Test scores keyed by (position of the directory in the comma-separated list, fine-tuning seed), and
    the positions of the directories' first listings (a directory listed twice is one set of runs)."""
    runs, first_listed = {}, {}
    for position, directory in enumerate(directories.split(",")):
        first_listed.setdefault(Path(directory).resolve(), position)
        summary = json.loads((Path(directory) / "summary.json").read_text())
        runs.update({(position, run["seed"]): run["test"] for run in summary["runs"]})
    return runs, set(first_listed.values())


def mean_std(values: list[float], signed: bool = False) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):{'+' if signed else ''}.2f} ± {spread:.2f}"


def position_means(values: dict[Key, float]) -> list[float]:
    """One value per pre-training run: the mean over its fine-tuning seeds, in position order."""
    positions = sorted({position for position, _ in values})
    return [statistics.fmean(v for (p, _), v in values.items() if p == position) for position in positions]


def run_level_cell(values: dict[Key, float], signed: bool) -> str:
    """``mean ± std [low, high]`` over pre-training runs (module docstring); the mean alone for one directory."""
    means = position_means(values)
    if len(means) == 1:
        return f"{means[0]:{'+' if signed else ''}.2f} (one directory)"
    low, high = t_interval(means)
    sign = "+" if signed else ""
    return f"{statistics.fmean(means):{sign}.2f} ± {statistics.stdev(means):.2f} [{low:{sign}.2f}, {high:{sign}.2f}]"


def table(
    arms: dict[str, Runs],
    distinct: dict[str, set[int]],
    seeds: list[Key],
    cell: Callable[[dict[Key, float], bool], str],
) -> list[str]:
    """Markdown rows: every arm over its ``distinct`` positions, then every pair's paired difference over all
    ``seeds``, each metric through ``cell``."""
    rows = ["| arm | " + " | ".join(label for _, label in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, runs in arms.items():
        own = [s for s in seeds if s[0] in distinct[name]]
        cells = [cell({s: runs[s][key] for s in own}, False) for key, _ in METRICS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    for first, second in combinations(arms, 2):
        cells = [cell({s: arms[first][s][key] - arms[second][s][key] for s in seeds}, True) for key, _ in METRICS]
        rows.append(f"| {first} − {second} (paired) | " + " | ".join(cells) + " |")
    return rows


def report(arms: dict[str, Runs], distinct: dict[str, set[int]] | None = None) -> list[str]:
    """The lines :func:`main` prints; ``distinct``: per arm, the positions of distinct directories (all)."""
    distinct = distinct or {name: {position for position, _ in runs} for name, runs in arms.items()}
    seeds = sorted(set.intersection(*(set(runs) for runs in arms.values())))
    if not seeds:
        raise ValueError("the arms share no (directory position, seed): pooled arms must list equally many")
    positions = sorted({position for position, _ in seeds})
    pooled = len(positions) > 1
    names = {key: f"{key[0]}.{key[1]}" if pooled else str(key[1]) for key in seeds}  # "position.seed" when pooled
    lines = [f"{'(pre-training position).(seed)' if pooled else 'seeds'} {', '.join(names.values())} (test, %)", ""]
    lines += table(arms, distinct, seeds, lambda values, signed: mean_std(list(values.values()), signed))
    if pooled:
        lines += [
            "",
            f"pre-training run as the unit ({len(positions)} runs, each the mean over its fine-tuning seeds):"
            f" mean ± std [95% t interval, df {len(positions) - 1}]",
            "",
        ]
        lines += table(arms, distinct, seeds, run_level_cell)
    lines += ["", "per seed (acc / macro-F1 / ISE / ESE):"]
    for name, runs in arms.items():
        row = "; ".join(f"{names[s]}: " + " / ".join(f"{runs[s][key]:.2f}" for key, _ in METRICS) for s in seeds)
        lines.append(f"- {name}: {row}")
    return lines


def main(argv: list[str]) -> None:
    loaded = {name: load(paths) for name, paths in (item.split("=", 1) for item in argv)}
    arms = {name: runs for name, (runs, _) in loaded.items()}
    try:
        print("\n".join(report(arms, {name: distinct for name, (_, distinct) in loaded.items()})))
    except ValueError as error:
        sys.exit(f"compare.py: {error}")


if __name__ == "__main__":
    main(sys.argv[1:])
