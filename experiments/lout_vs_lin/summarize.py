"""Tables of the L_out vs L_in experiment (run.sh): phase-1 probe, phase-2 test metrics per seed, mean ± std,
and the paired difference L_in − L_out on each seed.

    python experiments/lout_vs_lin/summarize.py runs/lout_vs_lin [--records experiments/lout_vs_lin/records]

With ``--records``, the numbers the tables use are also written there as ``results.json`` (committed).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

METRICS = ("acc", "macro_f1", "ise_acc", "ese_acc")
PROBES = ("val/probe_knn", "val/probe_centroid", "val/encoder_probe_knn", "val/mean_cosine", "val/scl")


def last_values(metrics_csv: Path, keys: tuple[str, ...]) -> dict[str, float]:
    """The last logged value of each key in a CSV logger's metrics.csv."""
    values: dict[str, float] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            values.update({key: float(row[key]) for key in keys if row.get(key)})
    return values


def collect(root: Path) -> dict:
    results: dict = {}
    for dataset_dir in sorted(path for path in root.iterdir() if path.is_dir()):
        for variant in ("out", "in"):
            run = dataset_dir / variant
            metrics = next((run / "pretrain").glob("*/version_0/metrics.csv"), None)
            summary = run / "finetune" / "summary.json"
            if metrics is None or not summary.is_file():
                continue
            seeds = json.loads(summary.read_text())["runs"]
            results.setdefault(dataset_dir.name, {})[variant] = {
                "probe": last_values(metrics, PROBES),
                "pretrain_seconds": json.loads((run / "pretrain" / "time.json").read_text())["seconds"],
                "seeds": {str(r["seed"]): {m: r["test"][m] for m in METRICS if m in r["test"]} for r in seeds},
                "dev": {str(r["seed"]): r.get("dev", {}).get("acc") for r in seeds},
            }
    return results


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "n/a"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def tables(results: dict) -> str:
    lines = []
    for dataset, arms in results.items():
        lines += [f"### {dataset}", "", "| phase-1 loss | 10-NN probe | centroid probe | encoder 10-NN | mean cosine |"]
        lines.append("|---|---|---|---|---|")
        for variant, arm in arms.items():
            probe = arm["probe"]
            cells = [f"{probe.get(key, float('nan')):.3f}" for key in PROBES[:4]]
            lines.append(f"| L_{variant} | " + " | ".join(cells) + " |")
        lines += ["", "| phase-1 loss | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for variant, arm in arms.items():
            cells = [mean_std([seed[m] for seed in arm["seeds"].values() if m in seed]) for m in METRICS]
            lines.append(f"| L_{variant} (3 seeds) | " + " | ".join(cells) + " |")
        if {"out", "in"} <= arms.keys():
            shared = sorted(set(arms["out"]["seeds"]) & set(arms["in"]["seeds"]))
            cells = []
            for m in METRICS:
                diffs = [arms["in"]["seeds"][s][m] - arms["out"]["seeds"][s][m] for s in shared]
                signs = f" ({sum(d > 0 for d in diffs)}/{len(diffs)} seeds higher)"
                cells.append(mean_std(diffs) + signs)
            lines.append("| L_in − L_out, paired | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--records", type=Path)
    args = parser.parse_args()
    results = collect(args.root)
    if args.records:
        args.records.mkdir(parents=True, exist_ok=True)
        (args.records / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(tables(results))


if __name__ == "__main__":
    main()
