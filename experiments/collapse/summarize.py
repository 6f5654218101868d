"""Tabulate and plot the collapse study's runs: ``python experiments/collapse/summarize.py [runs dir]``.

Prints one markdown row per run (its last evaluation) and writes ``probe_curves.png`` beside the runs:
held-out kNN probe, mean cosine and train loss / collapsed value against training examples seen.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(directory: Path) -> dict[str, list[dict]]:
    runs = {}
    for path in sorted(directory.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            runs[path.stem] = rows
    return runs


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, rows in runs.items():
        seen = [r["step"] * r["batch_size"] for r in rows]
        axes[0].plot(seen, [r["knn"] for r in rows], marker="o", label=name)
        axes[1].plot(seen, [r["mean_cosine"] for r in rows], marker="o", label=name)
        trained = [r for r in rows if "train_loss" in r]
        axes[2].plot(
            [r["step"] * r["batch_size"] for r in trained], [r["loss_ratio"] for r in trained], marker="o", label=name
        )
    axes[0].set(title="held-out 10-NN probe (features)", xlabel="training examples seen", ylabel="accuracy")
    axes[1].set(title="held-out mean pairwise cosine", xlabel="training examples seen")
    axes[2].set(title="train contrastive loss / collapsed value", xlabel="training examples seen")
    axes[2].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[2].axhline(0.9, color="grey", lw=0.8, ls=":")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/collapse/runs")  # or .../records
    runs = load(directory)
    print(table(runs))
    plot(runs, directory.parent / "probe_curves.png")


if __name__ == "__main__":
    main()
