"""Paired comparison of fine-tuning arms run on the same seeds (``scpt finetune seeds`` summaries).

    python experiments/scapt_restaurants/compare.py \\
        full=runs/pipeline/restaurants/finetune/pretrained direct=runs/pipeline/restaurants/finetune/direct \\
        no_scl=runs/ablation/no_scl/finetune

Prints, for test accuracy, macro-F1, ISE and ESE accuracy: mean ± sample std per arm over the seeds
all arms share, and for every pair of arms in the order given the paired per-seed difference
(mean ± std): ``full − direct``, ``full − no_scl``, ``direct − no_scl`` for the command above.

An arm may pool several directories, comma-separated (one per pre-training seed): its runs are then keyed
by (directory position, fine-tuning seed), so ``full=A7,A8 no_scl=B7,B8 direct=D,D`` pairs full and no_scl
within each pre-training seed, and each with the same direct run. Pooled arms must list equally many.
"""

from __future__ import annotations

import json
import statistics
import sys
from itertools import combinations
from pathlib import Path

METRICS = (("acc", "accuracy"), ("macro_f1", "macro-F1"), ("ise_acc", "ISE accuracy"), ("ese_acc", "ESE accuracy"))


def load(directories: str) -> dict[tuple[int, int], dict[str, float]]:
    """Test scores keyed by (position of the directory in the comma-separated list, fine-tuning seed)."""
    runs = {}
    for position, directory in enumerate(directories.split(",")):
        summary = json.loads((Path(directory) / "summary.json").read_text())
        runs.update({(position, run["seed"]): run["test"] for run in summary["runs"]})
    return runs


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):.2f} ± {spread:.2f}"


def main(argv: list[str]) -> None:
    arms = {name: load(paths) for name, paths in (item.split("=", 1) for item in argv)}
    seeds = sorted(set.intersection(*(set(runs) for runs in arms.values())))
    if not seeds:
        sys.exit("compare.py: the arms share no (directory position, seed): pooled arms must list equally many")
    pooled = max(position for position, _ in seeds) > 0
    names = {key: f"{key[0]}.{key[1]}" if pooled else str(key[1]) for key in seeds}  # "position.seed" when pooled
    print(f"{'(pre-training position).(seed)' if pooled else 'seeds'} {', '.join(names.values())} (test, %)\n")
    print("| arm | " + " | ".join(label for _, label in METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for name, runs in arms.items():
        cells = [mean_std([runs[s][key] for s in seeds]) for key, _ in METRICS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for first, second in combinations(arms, 2):
        cells = []
        for key, _ in METRICS:
            differences = [arms[first][s][key] - arms[second][s][key] for s in seeds]
            spread = statistics.stdev(differences) if len(differences) > 1 else float("nan")
            cells.append(f"{statistics.fmean(differences):+.2f} ± {spread:.2f}")
        print(f"| {first} − {second} (paired) | " + " | ".join(cells) + " |")
    print("\nper seed (acc / macro-F1 / ISE / ESE):")
    for name, runs in arms.items():
        row = "; ".join(f"{names[s]}: " + " / ".join(f"{runs[s][key]:.2f}" for key, _ in METRICS) for s in seeds)
        print(f"- {name}: {row}")


if __name__ == "__main__":
    main(sys.argv[1:])
