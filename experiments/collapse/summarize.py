"""Tabulate and plot the collapse study's runs: ``python experiments/collapse/summarize.py [runs dir]``.

Prints one markdown row per run (its last evaluation) and writes ``probe_curves.png`` beside the runs:
held-out kNN probe, mean cosine and train loss / collapsed value against training examples seen. The
figure is drawn by ``scpt.figures``; ``scpt figures collapse_probe_curves`` redraws it from ``records/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scpt.figures import draw_collapse_probe_curves, read_collapse_runs


def load(directory: Path) -> dict[str, list[dict]]:
    """``run name -> evaluations`` of the ``*.jsonl`` files in ``directory``."""
    return read_collapse_runs(directory)


def table(runs: dict[str, list[dict]]) -> str:
    lines = [
        "| run | batch | lr | steps | examples seen | train loss / collapsed | held-out mean cos "
        "| eff. rank | centroid / kNN (features) | centroid / kNN (encoder) | s/step |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in runs.items():
        last = rows[-1]
        ratio = f"{last['train_loss']:.3f} / {last['collapsed_loss']:.3f}" if "train_loss" in last else "-"
        per_step = last["elapsed_s"] / last["step"] if last["step"] else float("nan")
        lines.append(
            f"| {name} | {last['batch_size']} | {last['lr']:g} | {last['step']} | {last['step'] * last['batch_size']} "
            f"| {ratio} | {last['mean_cosine']:.3f} | {last['effective_rank']:.0f} "
            f"| {last['centroid']:.3f} / {last['knn']:.3f} "
            f"| {last['encoder_centroid']:.3f} / {last['encoder_knn']:.3f} | {per_step:.2f} |"
        )
    return "\n".join(lines)


def plot(runs: dict[str, list[dict]], out: Path) -> None:
    """The figure: ``scpt.figures.draw_collapse_probe_curves`` (``scpt figures collapse_probe_curves``)."""
    draw_collapse_probe_curves(runs, out)


def main() -> None:
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/collapse/runs")  # or .../records
    runs = load(directory)
    print(table(runs))
    plot(runs, directory.parent / "probe_curves.png")


if __name__ == "__main__":
    main()
