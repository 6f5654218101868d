"""Tables of the DSCL long-tail experiment (run.sh): per setting, the last validation's held-out probe
scores (accuracy, macro-F1, per-class recall and F1 of the centroid and 10-NN probes), mean ± std over
seeds, and the paired difference of each DSCL alpha minus SupCon L_out on the same seeds.

    python experiments/dscl_long_tail/summarize.py runs/dscl_long_tail [--records experiments/dscl_long_tail/records]

With ``--records``, the numbers are also written there as ``results.json`` (committed; ``scpt figures
dscl_long_tail`` draws from it).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

#: head to tail, as run.sh's corpus has them (neutral 4,867, positive 1,539, negative 487 training examples)
CLASSES = ("neutral", "positive", "negative")
PROBES = ("centroid", "knn")


def last_validation(metrics_csv: Path) -> dict[str, float]:
    """The ``val/`` values of the last row of a CSV logger's metrics.csv that logs ``val/probe_knn``."""
    last: dict[str, float] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            if row.get("val/probe_knn"):
                last = {key: float(value) for key, value in row.items() if key.startswith("val/") and value}
                last["step"] = float(row["step"])
    return last


def setting_order(name: str) -> tuple[int, float]:
    """SupCon first, then DSCL by alpha."""
    return (0, 0.0) if not name.startswith("dscl_alpha_") else (1, float(name.removeprefix("dscl_alpha_")))


def collect(root: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``setting -> seed -> values`` (the last validation, plus ``seconds``) of every finished run."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for setting in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: setting_order(p.name)):
        for run in sorted(setting.glob("seed_*")):
            time_file = run / "time.json"
            metrics = sorted(run.glob("*/version_*/metrics.csv"))
            if not time_file.is_file() or not metrics:
                continue
            values = last_validation(metrics[-1])
            values["seconds"] = json.loads(time_file.read_text())["seconds"]
            results.setdefault(setting.name, {})[run.name.removeprefix("seed_")] = values
    return results


def columns() -> list[tuple[str, str]]:
    """(header, key) of the table's columns."""
    out = [("10-NN acc", "val/probe_knn"), ("centroid acc", "val/probe_centroid"), ("mean cos", "val/mean_cosine")]
    for probe in PROBES:
        out.append((f"{probe} macro-F1", f"val/probe_{probe}_macro_f1"))
        out += [(f"{probe} recall {c}", f"val/probe_{probe}_recall/{c}") for c in CLASSES]
        out.append((f"{probe} F1 {CLASSES[-1]} (tail)", f"val/probe_{probe}_f1/{CLASSES[-1]}"))
    return out


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def tables(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: one row per setting (mean ± std over seeds), then paired differences against SupCon."""
    cols = columns()
    lines = ["| setting | seeds | " + " | ".join(h for h, _ in cols) + " | minutes |"]
    lines.append("|" + "---|" * (len(cols) + 3))
    for setting, seeds in results.items():
        cells = [mean_std([run[key] for run in seeds.values()]) for _, key in cols]
        minutes = statistics.mean(run["seconds"] for run in seeds.values()) / 60
        lines.append(f"| {setting} | {', '.join(seeds)} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    base = results.get("supcon_out")
    if base:
        lines += ["", "Paired differences, DSCL − SupCon L_out on the same seeds:", ""]
        lines.append("| setting | seeds | " + " | ".join(h for h, _ in cols) + " |")
        lines.append("|" + "---|" * (len(cols) + 2))
        for setting, seeds in results.items():
            shared = [seed for seed in seeds if seed in base and setting != "supcon_out"]
            if not shared:
                continue
            cells = [mean_std([seeds[s][key] - base[s][key] for s in shared]) for _, key in cols]
            lines.append(f"| {setting} | {', '.join(shared)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="run.sh's OUT folder")
    parser.add_argument("--records", type=Path, help="also write results.json here")
    args = parser.parse_args()
    results = collect(args.root)
    print(tables(results))
    if args.records:
        args.records.mkdir(parents=True, exist_ok=True)
        (args.records / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
