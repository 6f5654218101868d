"""The experiments' figures, redrawn from the run records committed under ``experiments/``.

``scpt figures [NAME ...] [--list] [--root DIR]`` draws every figure of :data:`FIGURES` (or the named
ones) from its records and writes it beside them, printing each path written. The records are small
CSV/JSON files in the experiments' ``records/`` folders: measurements written by the benchmark scripts
(``--out FILE.csv``) or transcribed from their recorded tables, and trimmed copies of the Lightning
``metrics.csv`` files of recorded pipeline runs (:func:`copy_pipeline_records`). A figure is therefore
reproducible from a checkout alone, without the runs.

The module is light: the readers use only the standard library, and matplotlib is imported inside the
drawing functions, which draw on an Agg canvas (no pyplot, no global backend), so the PNG's pixel size
is exactly the figure's size times :data:`DPI`.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scpt.errors import UserError

#: Resolution of every PNG (pixels per inch).
DPI = 100

#: The machine of every recorded run (experiments/*/RESULTS.md).
MACHINE = "2-core AMD EPYC VM, CPU only, torch 2.13.0+cpu"

# --------------------------------------------------------------------------------------------------
# Reading the records (standard library only)
# --------------------------------------------------------------------------------------------------


def _data_lines(path: Path) -> list[str]:
    """The lines of a CSV record that are not ``#`` comments (provenance) or blank."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise UserError(f"records file {path} is missing") from error
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def read_csv_records(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV record (``#`` lines skipped) as dicts of strings; a ``.json`` record's ``rows``."""
    if Path(path).suffix.lower() == ".json":
        try:
            rows = json.loads(Path(path).read_text(encoding="utf-8"))["rows"]
        except FileNotFoundError as error:
            raise UserError(f"records file {path} is missing") from error
        return [{key: "" if value is None else str(value) for key, value in row.items()} for row in rows]
    return list(csv.DictReader(_data_lines(path)))


def _float(text: str | None) -> float | None:
    return None if text is None or text.strip() == "" else float(text)


@dataclass(frozen=True)
class LossCell:
    """One cell of the loss benchmark (``experiments/benchmarks/losses.py``)."""

    record: str  # the run's date: a records file may hold several runs
    n: int
    d: int
    method: str
    time_s: float | None  # median forward + backward time; None if skipped or failed
    rss_gib: float | None  # peak RSS increase over one pass


def read_loss_benchmark(path: Path) -> list[LossCell]:
    """The cells of a loss-benchmark record (``losses.py --out FILE.csv``, or the transcription)."""
    return [
        LossCell(
            record=row["record"],
            n=int(row["n"]),
            d=int(row["d"]),
            method=row["method"],
            time_s=_float(row["time_s"]) if row.get("status", "ok") == "ok" else None,
            rss_gib=_float(row["rss_gib"]) if row.get("status", "ok") == "ok" else None,
        )
        for row in read_csv_records(path)
    ]


@dataclass(frozen=True)
class GradCachePoint:
    """One point of the gradient-caching benchmark (``experiments/benchmarks/grad_cache.py``)."""

    n: int
    chunk: int  # grad_cache_chunk; 0: no caching
    mmap_threshold: str  # glibc's MALLOC_MMAP_THRESHOLD_, or "default"
    peak_gib: float | None
    samples_per_s: float | None


def read_grad_cache(path: Path) -> list[GradCachePoint]:
    """The points of a gradient-caching record (``grad_cache.py --out FILE.csv``, or the transcription)."""
    return [
        GradCachePoint(
            n=int(row["n"]),
            chunk=int(row["chunk"] or 0),
            mmap_threshold=row.get("mmap_threshold") or "default",
            peak_gib=_float(row.get("peak_gib")),
            samples_per_s=_float(row.get("samples_per_s")),
        )
        for row in read_csv_records(path)
        if not row.get("error")
    ]


#: Lightning ``metrics.csv`` columns of phase 1 that the learning-curve figure uses.
PRETRAIN_COLUMNS = (
    "train/scl_step",
    "train/scl_collapsed_step",
    "train/scl_floor_step",
    "train/scl_in_batch_step",
    "train/scl_in_batch_collapsed_step",
    "train/scl_in_batch_floor_step",
    "train/map_step",
    "train/rr_step",
    "val/probe_knn",
    "val/probe_centroid",
    "val/encoder_probe_knn",
    "val/encoder_probe_centroid",
    "val/mean_cosine",
)

#: Lightning ``metrics.csv`` columns of phase 2 that the learning-curve figure uses.
FINETUNE_COLUMNS = ("val/acc", "val/macro_f1", "test/acc", "test/macro_f1")


def read_metrics(path: Path, columns: Sequence[str]) -> list[dict[str, float]]:
    """The rows of a Lightning ``metrics.csv`` (or a trimmed copy) that log any of ``columns``.

    Each row maps ``step``, ``epoch`` (ints, when logged) and those of ``columns`` it has a value for
    (floats); empty cells are left out, as are rows with none of ``columns``.
    """
    rows = []
    for row in read_csv_records(path):
        values: dict[str, Any] = {name: float(row[name]) for name in columns if (row.get(name) or "").strip()}
        if not values:
            continue
        for key in ("step", "epoch"):
            if (row.get(key) or "").strip():
                values[key] = int(float(row[key]))
        rows.append(values)
    return rows


def read_finetune_curves(path: Path) -> dict[tuple[str, int], list[dict[str, float]]]:
    """``(arm, seed) -> rows`` of a ``finetune.csv`` record (columns arm, seed, epoch, step, metrics)."""
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for row in read_csv_records(path):
        values: dict[str, Any] = {name: float(row[name]) for name in FINETUNE_COLUMNS if (row.get(name) or "").strip()}
        if not values:
            continue
        values.update(step=int(row["step"]), epoch=int(row["epoch"]))
        runs.setdefault((row["arm"], int(row["seed"])), []).append(values)
    return runs


def read_collapse_runs(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """``run name -> evaluations`` of the collapse study: one JSON object a line in ``directory/*.jsonl``."""
    runs = {}
    for path in sorted(Path(directory).glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if rows:
            runs[path.stem] = rows
    if not runs:
        raise UserError(f"records directory {directory} holds no .jsonl records")
    return runs


# --------------------------------------------------------------------------------------------------
# Copying a pipeline run's metrics into records
# --------------------------------------------------------------------------------------------------


def _version_dir(parent: Path, checkpoint: str | None) -> Path:
    """The ``<name>/version_k`` folder under ``parent`` that wrote ``checkpoint`` (else the only/last one)."""
    if checkpoint:
        parts = Path(checkpoint).parts
        for index, part in enumerate(parts):
            if re.fullmatch(r"version_\d+", part) and index > 0:
                candidate = parent / parts[index - 1] / part
                if candidate.is_dir():
                    return candidate
    versions = sorted(parent.glob("*/version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not versions:
        raise UserError(f"no Lightning version_* folder under {parent}")
    return versions[-1]


def _write_trimmed(path: Path, comment: str, fieldnames: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        handle.writelines(f"# {line}\n" for line in comment.splitlines())
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def copy_pipeline_records(run_dir: Path, records_dir: Path, comment: str) -> list[Path]:
    """Copy what the learning-curve figure needs from an ``scpt pipeline`` output folder into records.

    Writes ``records_dir/pretrain.csv`` (phase 1's :data:`PRETRAIN_COLUMNS`) and ``finetune.csv`` (phase 2's
    :data:`FINETUNE_COLUMNS` of every ``finetune/<arm>/seed<k>`` run, with ``arm`` and ``seed`` columns), each
    headed by ``comment`` as ``#`` lines (say which command made the run, when and where). Returns the paths.
    """
    run_dir, records_dir = Path(run_dir), Path(records_dir)
    records_dir.mkdir(parents=True, exist_ok=True)
    stage = json.loads((run_dir / "pretrain" / "stage.json").read_text())
    pretrain_csv = _version_dir(run_dir / "pretrain", stage.get("checkpoint")) / "metrics.csv"
    pretrain_rows = read_metrics(pretrain_csv, PRETRAIN_COLUMNS)
    pretrain_out = records_dir / "pretrain.csv"
    _write_trimmed(pretrain_out, comment, ("epoch", "step", *PRETRAIN_COLUMNS), pretrain_rows)

    finetune_rows = []
    for seed_dir in sorted((run_dir / "finetune").glob("*/seed*")):
        result = json.loads((seed_dir / "result.json").read_text())
        arm, seed = seed_dir.parent.name, int(seed_dir.name.removeprefix("seed"))
        metrics = _version_dir(seed_dir, result.get("best_checkpoint")) / "metrics.csv"
        finetune_rows += [{"arm": arm, "seed": seed, **row} for row in read_metrics(metrics, FINETUNE_COLUMNS)]
    finetune_out = records_dir / "finetune.csv"
    _write_trimmed(finetune_out, comment, ("arm", "seed", "epoch", "step", *FINETUNE_COLUMNS), finetune_rows)
    return [pretrain_out, finetune_out]


# --------------------------------------------------------------------------------------------------
# Drawing (matplotlib imported here only, on an Agg canvas)
# --------------------------------------------------------------------------------------------------


def _new_figure(size: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, out: Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI, format="png")


def _log2_n_axis(axes: Any, sizes: Sequence[int], label: str) -> None:
    axes.set_xscale("log", base=2)
    axes.set_xticks(list(sizes), [f"{n:,}" for n in sizes])
    axes.minorticks_off()
    axes.set_xlabel(label)


#: How each method of the loss benchmark is drawn: label, colour, line style, marker.
LOSS_METHOD_STYLES: dict[str, tuple[str, str, str, str]] = {
    "scpt": ("scpt SupCon L_out", "tab:blue", "-", "o"),
    "scpt-in": ("scpt SupCon L_in", "tab:cyan", "-", "s"),
    "scpt-dscl": ("scpt DSCL", "tab:purple", "-", "^"),
    "pml": ("pytorch-metric-learning SupCon", "tab:red", "--", "D"),
    "dense": ("dense textbook L_out", "tab:orange", "--", "v"),
    "floor": ("floor: 3 matmuls + 2 exp, no autograd", "black", ":", "."),
}

LOSSES_SIZE = (12.0, 5.0)


def _select_record(cells: Sequence[LossCell], record: str | None, path: Path) -> list[LossCell]:
    records = sorted({cell.record for cell in cells})
    if record is None:
        if len(records) != 1:
            raise UserError(f"{path} holds several records ({', '.join(records)}); name one")
        record = records[0]
    if record not in records:
        raise UserError(f"{path} has no record {record!r} (it has: {', '.join(records) or 'none'})")
    return [cell for cell in cells if cell.record == record]


def _plot_losses(
    records: Path, out: Path, quantity: str, record: str | None, size: tuple[float, float], note: str
) -> None:
    cells = _select_record(read_loss_benchmark(records), record, records)
    figure = _new_figure(size)
    dims = sorted({cell.d for cell in cells})
    axes_list = figure.subplots(1, len(dims), sharey=True, squeeze=False)[0]
    attribute, ylabel, what = {
        "time": ("time_s", "forward + backward time (s)", "time"),
        "memory": ("rss_gib", "peak RSS increase over one pass (GiB)", "peak memory"),
    }[quantity]
    for axes, dim in zip(axes_list, dims):
        sizes = sorted({cell.n for cell in cells if cell.d == dim})
        for method, (label, colour, style, marker) in LOSS_METHOD_STYLES.items():
            points = sorted((c.n, getattr(c, attribute)) for c in cells if c.d == dim and c.method == method)
            points = [(n, value) for n, value in points if value is not None and value > 0]
            if points:
                axes.plot(*zip(*points), label=label, color=colour, linestyle=style, marker=marker)
        axes.set_yscale("log")
        _log2_n_axis(axes, sizes, "batch size N (V = 2 views: VN = 2N contrast entries)")
        axes.set_title(f"D = {dim}")
        axes.grid(True, which="major", alpha=0.3)
    axes_list[0].set_ylabel(ylabel)
    axes_list[0].legend(fontsize=8)
    chosen = cells[0].record if cells else record
    figure.suptitle(
        f"Loss benchmark: {what} vs batch size, SupCon-style losses (tau 0.07, fp32, 10 classes)\n"
        f"recorded {chosen} (experiments/benchmarks/losses.py), {MACHINE}, 2 threads" + (f"; {note}" if note else ""),
        fontsize=11,
    )
    figure.tight_layout()
    _save(figure, out)


def plot_losses_time(
    records: Path, out: Path, record: str | None = None, size: tuple[float, float] = LOSSES_SIZE, note: str = ""
) -> None:
    """Log-log forward + backward time vs N, one line per method, one panel per D (``record``: which run of
    the file; ``None`` if it holds one; ``note``: appended to the title)."""
    _plot_losses(records, out, "time", record, size, note)


def plot_losses_memory(
    records: Path, out: Path, record: str | None = None, size: tuple[float, float] = LOSSES_SIZE, note: str = ""
) -> None:
    """Log-log peak RSS increase vs N, one line per method, one panel per D (arguments as
    :func:`plot_losses_time`)."""
    _plot_losses(records, out, "memory", record, size, note)


GRAD_CACHE_SIZE = (10.0, 6.0)


def _least_squares(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """``(intercept, slope)`` of the least-squares line through ``(x, y)`` points."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x in xs)
    return mean_y - slope * mean_x, slope


def plot_grad_cache_memory(
    records: Path, out: Path, budget_gib: float = 24.0, size: tuple[float, float] = GRAD_CACHE_SIZE
) -> None:
    """Log-log peak RSS of one phase-1 step vs N, with and without gradient caching, per allocator setting;
    without caching, the least-squares line extended to the memory budget."""
    points = read_grad_cache(records)
    figure = _new_figure(size)
    axes = figure.subplots()
    series: dict[tuple[int, str], list[tuple[int, float]]] = {}
    for point in points:
        if point.peak_gib is not None:
            series.setdefault((point.chunk, point.mmap_threshold), []).append((point.n, point.peak_gib))
    colours = {0: "tab:red", 1: "tab:blue"}
    order = sorted(series, key=lambda key: (key[0], key[1] != "default", key[1]))
    for index, (chunk, threshold) in enumerate(order):
        values = sorted(series[(chunk, threshold)])
        caching = f"caching, chunk {chunk}" if chunk else "no caching"
        allocator = "glibc default malloc" if threshold == "default" else f"MALLOC_MMAP_THRESHOLD_={threshold}"
        style = "-" if threshold == "default" else "--"
        colour = colours[bool(chunk)]
        axes.plot(*zip(*values), color=colour, linestyle=style, marker="o", label=f"{caching}, {allocator}")
        if not chunk and len(values) >= 2:
            intercept, slope = _least_squares(values)
            n_max = (budget_gib - intercept) / slope
            xs = [values[0][0], n_max]
            axes.plot(xs, [intercept + slope * x for x in xs], color=colour, linestyle=style, alpha=0.35, lw=1)
            axes.annotate(
                f"{'default malloc' if threshold == 'default' else 'mmap threshold'}: N ≈ {float(f'{n_max:.2g}'):,.0f}",
                (n_max, budget_gib), textcoords="offset points", xytext=(-6, -14 - 12 * index), fontsize=8,
                color=colour, ha="right",
            )  # fmt: skip
    axes.axhline(budget_gib, color="grey", lw=0.8, ls=":", label=f"{budget_gib:g} GiB budget (the machine: 24 GB)")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    sizes = sorted({p.n for p in points})
    axes.set_xticks(sizes, [f"{n:,}" for n in sizes])
    axes.minorticks_off()
    ticks = [1, 2, 4, 8, 16, 24]
    axes.set_yticks(ticks, [f"{t:g}" for t in ticks])
    axes.set_xlabel("contrastive batch size N (sentences of 64 tokens)")
    axes.set_ylabel("peak resident set size of the step (GiB)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    figure.suptitle(
        "One phase-1 training step (all-MiniLM-L6-v2, SupCon only): peak memory vs N, with and without\n"
        f"gradient caching; recorded 2026-11-30 (experiments/benchmarks/grad_cache.py), {MACHINE}\n"
        "faint lines: least-squares fit without caching, extended to the budget",
        fontsize=10,
    )
    figure.tight_layout()
    _save(figure, out)


PIPELINE_SIZE = (16.0, 9.0)

#: Phase 2 arms: colour; seeds: line style. A pipeline variant's arm takes the next of VARIANT_COLOURS.
ARM_COLOURS = {"pretrained": "tab:blue", "direct": "tab:orange"}
VARIANT_COLOURS = ("tab:green", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
SEED_STYLES = ("-", "--", ":", "-.")


def arm_colours(arms: Sequence[str]) -> dict[str, str]:
    """A colour per phase-2 arm: :data:`ARM_COLOURS` for the two main arms, then :data:`VARIANT_COLOURS` in
    sorted order of the other arms (cycling), so a variant never shares a main arm's colour."""
    variants = sorted(set(arms) - set(ARM_COLOURS))
    return {
        **{arm: ARM_COLOURS[arm] for arm in arms if arm in ARM_COLOURS},
        **{arm: VARIANT_COLOURS[i % len(VARIANT_COLOURS)] for i, arm in enumerate(variants)},
    }


def _series(rows: Sequence[dict[str, float]], column: str) -> tuple[list[float], list[float]]:
    pairs = [(row["step"], row[column]) for row in rows if column in row and "step" in row]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_pipeline_curves(
    pretrain: Path, finetune: Path, out: Path, title: str, size: tuple[float, float] = PIPELINE_SIZE
) -> None:
    """The two-phase pipeline's learning curves: phase 1's loss terms, probe and mean cosine against the
    pre-training step; phase 2's dev accuracy and macro-F1 per validation for both arms and every seed
    (a star at the checkpoint selected on dev accuracy; the legend gives its test score)."""
    phase1 = read_metrics(pretrain, PRETRAIN_COLUMNS)
    phase2 = read_finetune_curves(finetune)
    figure = _new_figure(size)
    grid = figure.subplots(2, 3)
    step_label = "pre-training step (batch 32)"

    scl = grid[0][0]
    scl.plot(*_series(phase1, "train/scl_step"), color="tab:blue", label="train SupCon")
    scl.plot(*_series(phase1, "train/scl_collapsed_step"), color="grey", ls="--", label="its collapsed value")
    if any("train/scl_floor_step" in row for row in phase1):  # logged since the floor was added
        scl.plot(*_series(phase1, "train/scl_floor_step"), color="grey", ls=":", label="its floor (classes separated)")
    if any("train/scl_in_batch_step" in row for row in phase1):  # logged when a queue joins the contrast set
        scl.plot(
            *_series(phase1, "train/scl_in_batch_step"), color="tab:orange", lw=0.8, label="the batch alone (no queue)"
        )
        scl.plot(*_series(phase1, "train/scl_in_batch_collapsed_step"), color="tab:orange", ls="--", lw=0.8)
        scl.plot(*_series(phase1, "train/scl_in_batch_floor_step"), color="tab:orange", ls=":", lw=0.8)
    scl.set(title="phase 1: contrastive term (train, per step)", xlabel=step_label)
    scl.text(
        0.98, 0.3, "the collapsed value, scale · log|A(a)|,\nrises while the queue fills",
        transform=scl.transAxes, ha="right", fontsize=8, color="grey",
    )  # fmt: skip
    scl.set_ylabel("loss (nats × tau / base_temperature)")
    scl.legend(fontsize=8)

    terms = grid[0][1]
    terms.plot(*_series(phase1, "train/map_step"), color="tab:green", label="masked aspect prediction (MAP)")
    terms.plot(*_series(phase1, "train/rr_step"), color="tab:brown", label="review reconstruction (RR)")
    terms.set(title="phase 1: auxiliary terms (train, per step)", xlabel=step_label, ylabel="loss (nats per token)")
    terms.legend(fontsize=8)

    probe = grid[0][2]
    for column, label, colour, style in (
        ("val/probe_knn", "10-NN, projected features", "tab:blue", "-"),
        ("val/probe_centroid", "centroid, projected features", "tab:cyan", "-"),
        ("val/encoder_probe_knn", "10-NN, encoder [CLS]", "tab:red", "--"),
        ("val/encoder_probe_centroid", "centroid, encoder [CLS]", "tab:orange", "--"),
    ):
        probe.plot(*_series(phase1, column), color=colour, ls=style, marker="o", label=label)
    probe.set(title="phase 1: held-out label probe", xlabel=step_label, ylabel="probe accuracy (fraction)")
    probe.legend(fontsize=8)

    cosine = grid[1][0]
    cosine.plot(*_series(phase1, "val/mean_cosine"), color="tab:purple", marker="o")
    cosine.set(title="phase 1: held-out mean pairwise cosine", xlabel=step_label, ylabel="mean cosine")
    cosine.set_ylim(0, 1)

    for axes, column, test, name, short in (
        (grid[1][1], "val/acc", "test/acc", "accuracy", "acc"),
        (grid[1][2], "val/macro_f1", "test/macro_f1", "macro-F1", "F1"),
    ):
        colours = arm_colours([arm for arm, _ in phase2])
        for (arm, seed), rows in sorted(phase2.items()):
            steps, values = _series(rows, column)
            if not values:
                continue
            tests = [row[test] for row in rows if test in row]
            label = f"{arm}, seed {seed}" + (f" (test {short} {tests[-1]:.2f})" if tests else "")
            colour = colours[arm]
            style = SEED_STYLES[(seed - 1) % len(SEED_STYLES)]
            axes.plot(steps, values, color=colour, ls=style, marker=".", label=label)
            accuracies = _series(rows, "val/acc")[1]
            best = accuracies.index(max(accuracies))  # selected on dev accuracy (the first best)
            axes.plot(steps[best], values[best], color=colour, marker="*", markersize=12, ls="none")
        axes.set(title=f"phase 2: dev {name} (★ selected checkpoint)", xlabel="fine-tuning step (batch 32)")
        axes.set_ylabel(f"dev {name} (%)")
        axes.legend(fontsize=7, loc="lower right")
    for axes in (a for row in grid for a in row):
        axes.grid(True, alpha=0.3)
    figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    _save(figure, out)


COLLAPSE_SIZE = (16.0, 5.6)


def _collapse_setting(row: dict[str, Any]) -> str:
    """A run's knobs, from its first record: ``tau 0.5, lr 1e-4, queue 4096, momentum 0.99``."""
    parts = [f"tau {row.get('temperature', '?'):g}", f"lr {row.get('lr', '?'):g}"]
    if row.get("projection_norm") not in (None, "none"):
        parts.append(f"{row['projection_norm']}-norm projection")
    if row.get("queue_size"):
        parts.append(f"queue {row['queue_size']}")
    if row.get("momentum"):
        parts.append(f"momentum {row['momentum']:g}")
    return ", ".join(parts)


def draw_collapse_probe_curves(
    runs: dict[str, list[dict[str, Any]]], out: Path, size: tuple[float, float] = COLLAPSE_SIZE
) -> None:
    """The collapse study's curves against examples seen: held-out 10-NN probe, mean cosine, and the train
    contrastive loss over its collapsed value (one line per run, ``run name -> evaluations``)."""
    figure = _new_figure(size)
    axes = figure.subplots(1, 3)
    for name, rows in runs.items():
        seen = [r["step"] * r["batch_size"] for r in rows]
        label = f"{name}: {_collapse_setting(rows[0])}"
        axes[0].plot(seen, [r["knn"] for r in rows], marker="o", label=label)
        axes[1].plot(seen, [r["mean_cosine"] for r in rows], marker="o", label=name)
        trained = [r for r in rows if "loss_ratio" in r]
        axes[2].plot(
            [r["step"] * r["batch_size"] for r in trained], [r["loss_ratio"] for r in trained], marker="o", label=name
        )
    axes[0].set(title="held-out 10-NN probe (projected features)", ylabel="probe accuracy (fraction)")
    axes[0].axhline(0.39, color="grey", lw=0.8, ls=":", label="majority class")
    axes[1].set(title="held-out mean pairwise cosine", ylabel="mean cosine")
    axes[2].set(title="train contrastive loss / its collapsed value", ylabel="ratio (1 = collapsed)")
    axes[2].axhline(1.0, color="grey", lw=0.8, ls="--", label="collapsed")
    axes[2].axhline(0.9, color="grey", lw=0.8, ls=":", label="the monitor's 0.9 criterion")
    axes[2].legend(handles=axes[2].get_lines()[-2:], fontsize=7, loc="upper right")
    for axis in axes:
        axis.set_xlabel("training examples seen (step × batch 32)")
        axis.grid(True, alpha=0.3)
    figure.legend(handles=axes[0].get_lines(), loc="lower center", ncol=4, fontsize=8)
    figure.suptitle(
        "Collapse study: SupCon alone on the in-domain Restaurant corpus, one knob per run (seed 7)\n"
        f"recorded 2026-11-30 (experiments/collapse/study.py), {MACHINE}",
        fontsize=11,
    )
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    _save(figure, out)


def plot_collapse_probe_curves(records: Path, out: Path, size: tuple[float, float] = COLLAPSE_SIZE) -> None:
    """:func:`draw_collapse_probe_curves` of the ``*.jsonl`` records in the directory ``records``."""
    draw_collapse_probe_curves(read_collapse_runs(records), out, size)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


#: The L_out vs L_in experiment's fine-tuning metrics (experiments/lout_vs_lin/records/results.json), as plotted.
LOUT_LIN_METRICS = (("acc", "accuracy"), ("macro_f1", "macro-F1"), ("ise_acc", "ISE acc."), ("ese_acc", "ESE acc."))


def read_lout_vs_lin(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``dataset -> variant ("out", "in") -> {"probe": {metric: value}, "seeds": {seed: {metric: value}}}`` of
    the L_out vs L_in record (``experiments/lout_vs_lin/summarize.py --records``)."""
    data = json.loads(Path(path).read_text())
    return {
        dataset: {variant: {"probe": arm["probe"], "seeds": arm["seeds"]} for variant, arm in arms.items()}
        for dataset, arms in data.items()
    }


def plot_lout_vs_lin(records: Path, out: Path, size: tuple[float, float] = (11.0, 7.0)) -> None:
    """Per dataset (rows): phase 1's held-out probes for each loss, and phase 2's test metrics, mean ± std over
    seeds with every seed as a dot."""
    results = read_lout_vs_lin(records)
    figure = _new_figure(size)
    grid = figure.subplots(len(results), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 2.2]})
    styles = {"out": ("SupCon L_out", "tab:blue"), "in": ("SupCon L_in", "tab:orange")}
    for row, (dataset, arms) in enumerate(results.items()):
        probe_axes, finetune_axes = grid[row]
        probes = (("val/probe_knn", "10-NN"), ("val/probe_centroid", "centroid"))
        for offset, (variant, (label, colour)) in enumerate(styles.items()):
            if variant not in arms:
                continue
            arm = arms[variant]
            xs = [i + (offset - 0.5) * 0.38 for i in range(len(probes))]
            probe_axes.bar(xs, [arm["probe"][key] for key, _ in probes], width=0.36, color=colour, label=label)
            seeds = arm["seeds"]
            for i, (key, _) in enumerate(LOUT_LIN_METRICS):
                values = [run[key] for run in seeds.values()]
                mean, std = _mean_std(values)
                x = i + (offset - 0.5) * 0.38
                finetune_axes.bar(
                    x, mean, yerr=std, width=0.36, color=colour, capsize=3, alpha=0.8, label=label if i == 0 else None
                )
                finetune_axes.plot([x] * len(values), values, "k.", markersize=4)
        probe_axes.set_xticks(range(len(probes)), [name for _, name in probes])
        probe_axes.set_ylim(0.3, 0.95)
        probe_axes.set_ylabel("held-out probe accuracy")
        name = dataset.removesuffix("s").capitalize()
        probe_axes.set_title(f"{name}: phase 1 (one seed)")
        probe_axes.legend(fontsize=8, loc="upper left", ncol=2)
        finetune_axes.set_xticks(range(len(LOUT_LIN_METRICS)), [name for _, name in LOUT_LIN_METRICS])
        finetune_axes.set_ylim(50, 100)
        finetune_axes.set_ylabel("test %, mean ± std (dots: seeds)")
        finetune_axes.set_title(f"{name}: phase 2 fine-tuned from each encoder")
        finetune_axes.legend(fontsize=8, loc="upper left", ncol=2)
    figure.suptitle(f"SupCon L_out vs L_in as the phase-1 loss (experiments/lout_vs_lin; {MACHINE})")
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    _save(figure, out)


#: The DSCL long-tail experiment's classes, head to tail (experiments/dscl_long_tail/run.sh).
LONG_TAIL_CLASSES = ("neutral", "positive", "negative")


def _long_tail_setting(name: str) -> str:
    """``supcon_out`` -> ``SupCon L_out``; ``dscl_alpha_0.25`` -> ``DSCL a=0.25``."""
    return "SupCon L_out" if name == "supcon_out" else "DSCL a=" + name.removeprefix("dscl_alpha_")


def _long_tail_order(name: str) -> tuple[int, float]:
    """SupCon first, then DSCL by alpha."""
    return (0, 0.0) if not name.startswith("dscl_alpha_") else (1, float(name.removeprefix("dscl_alpha_")))


def read_long_tail(path: Path) -> dict[str, dict[str, list[float]]]:
    """``setting -> metric -> [value per seed]`` of the DSCL long-tail record
    (``experiments/dscl_long_tail/summarize.py --records``): SupCon first, then DSCL by alpha."""
    data = json.loads(Path(path).read_text())
    out: dict[str, dict[str, list[float]]] = {}
    order = sorted(data, key=_long_tail_order)
    for setting, seeds in ((name, data[name]) for name in order):
        metrics: dict[str, list[float]] = {}
        for seed in sorted(seeds, key=int):
            for key, value in seeds[seed].items():
                metrics.setdefault(key, []).append(float(value))
        out[setting] = metrics
    return out


def plot_dscl_long_tail(records: Path, out: Path, size: tuple[float, float] = (13.0, 4.6)) -> None:
    """Per setting (SupCon L_out, DSCL at each alpha): each class's held-out recall under the centroid and
    10-NN probes, head to tail, and the macro-F1 and tail-class F1 of both probes (mean ± std over seeds)."""
    results = read_long_tail(records)
    settings = list(results)
    figure = _new_figure(size)
    axes_list = figure.subplots(1, 3)
    colours = ("tab:green", "tab:blue", "tab:red")
    width = 0.8 / len(LONG_TAIL_CLASSES)
    for axes, probe, title in zip(axes_list[:2], ("centroid", "knn"), ("centroid probe", "10-NN probe")):
        for c, (name, colour) in enumerate(zip(LONG_TAIL_CLASSES, colours)):
            stats = [_mean_std(results[s][f"val/probe_{probe}_recall/{name}"]) for s in settings]
            xs = [i + (c - (len(LONG_TAIL_CLASSES) - 1) / 2) * width for i in range(len(settings))]
            role = " (head)" if c == 0 else " (tail)" if c == len(LONG_TAIL_CLASSES) - 1 else ""
            means, errors = [m for m, _ in stats], [e for _, e in stats]
            axes.bar(xs, means, yerr=errors, width=width, color=colour, capsize=2, label=name + role)
        axes.set_xticks(range(len(settings)), [_long_tail_setting(s) for s in settings], rotation=20, fontsize=8)
        axes.set_ylim(0, 1.2)
        axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        axes.set_ylabel("held-out recall (per-class accuracy)")
        axes.set_title(title)
        axes.legend(fontsize=8, loc="upper center", ncol=3)
    axes = axes_list[2]
    xs = list(range(len(settings)))
    for probe, marker in (("centroid", "o"), ("knn", "s")):
        label = "centroid" if probe == "centroid" else "10-NN"
        for key, style, what in ((f"val/probe_{probe}_macro_f1", "-", "macro-F1"),
                                 (f"val/probe_{probe}_f1/{LONG_TAIL_CLASSES[-1]}", "--", "tail F1")):  # fmt: skip
            stats = [_mean_std(results[s][key]) for s in settings]
            axes.errorbar(xs, [m for m, _ in stats], yerr=[e for _, e in stats], fmt=marker + style, capsize=2,
                          label=f"{label} {what}")  # fmt: skip
    axes.set_xticks(xs, [_long_tail_setting(s) for s in settings], rotation=20, fontsize=8)
    axes.set_ylabel("held-out F1")
    axes.set_title("macro-F1 and tail-class F1")
    axes.legend(fontsize=8)
    counts = sorted({len(next(iter(m.values()))) for m in results.values()})
    seeds = f"{counts[0]} seed{'s' if counts[0] > 1 else ''}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds"
    figure.suptitle(
        f"DSCL vs SupCon L_out on a 10:1 long-tailed Restaurant corpus, {seeds} per setting\n"
        f"(experiments/dscl_long_tail; {MACHINE})"
    )
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    _save(figure, out)


# --------------------------------------------------------------------------------------------------
# The registry and the command
# --------------------------------------------------------------------------------------------------


def read_sweep_grid(path: Path, metric: str) -> tuple[list[float], list[float], list[list[float | None]]]:
    """``(temperatures, alphas, values[alpha][temperature])`` of a two-parameter sweep's ``trials.csv``
    (``scpt sweep report``): the first two parameter columns after ``state``, COMPLETE trials only."""
    rows = read_csv_records(path)
    first, second = list(rows[0])[2:4]
    xs = sorted({float(row[first]) for row in rows})
    ys = sorted({float(row[second]) for row in rows})
    grid: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    for row in rows:
        if row["state"] == "COMPLETE" and row.get(metric):
            grid[ys.index(float(row[second]))][xs.index(float(row[first]))] = float(row[metric])
    return xs, ys, grid


def plot_sweep_heatmaps(one_view: Path, two_views: Path, out: Path, size: tuple[float, float] = (11.0, 4.4)) -> None:
    """The DSCL tau x alpha sweep's held-out 10-NN probe, one view (alpha inert) beside two views, on one
    colour scale, each cell annotated."""
    figure = _new_figure(size)
    grids = [read_sweep_grid(path, "val/probe_knn") for path in (one_view, two_views)]
    values = [v for _, _, grid in grids for row in grid for v in row if v is not None]
    low, high = min(values), max(values)
    axes_list = figure.subplots(1, 2)
    for axes, (xs, ys, grid), title in zip(
        axes_list, grids, ("one view (SCAPT): alpha has nothing to weigh", "two dropout views")
    ):
        data = [[float("nan") if v is None else v for v in row] for row in grid]
        image = axes.imshow(data, origin="lower", cmap="viridis", vmin=low, vmax=high, aspect="auto")
        axes.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        axes.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
        axes.set_xlabel("temperature tau")
        axes.set_ylabel("alpha")
        axes.set_title(title)
        for j, row in enumerate(grid):
            for i, value in enumerate(row):
                text = "failed" if value is None else f"{value:.3f}"
                axes.text(
                    i, j, text, ha="center", va="center", color="white" if (value or 0) < (low + high) / 2 else "black"
                )
    figure.subplots_adjust(top=0.80, bottom=0.13, left=0.06, right=0.86, wspace=0.28)
    figure.colorbar(image, ax=list(axes_list), label="held-out 10-NN probe (512 examples; s.e. ~0.022)")
    figure.suptitle("DSCL in phase 1 on Restaurant, 60 steps of batch 32, seed 7 (scpt sweep; 2-core CPU, 2026-11-30)")
    _save(figure, out)


@dataclass(frozen=True)
class FigureSpec:
    """A figure: its records (paths relative to the repository root), its PNG, and how to draw it."""

    inputs: tuple[str, ...]
    output: str
    description: str
    size: tuple[float, float]
    draw: Callable[..., None]  # draw(*input paths, output path, size=size)

    @property
    def pixels(self) -> tuple[int, int]:
        """The PNG's width and height in pixels."""
        return round(self.size[0] * DPI), round(self.size[1] * DPI)


def _pipeline(dataset: str, command: str) -> Callable[..., None]:
    def draw(pretrain: Path, finetune: Path, out: Path, size: tuple[float, float]) -> None:
        title = (
            f"Two-phase pipeline on SemEval-2014 {dataset}: pre-trained vs direct fine-tuning, seeds 1-3\n"
            f"{command}   (recorded 2026-11-30, {MACHINE})"
        )
        plot_pipeline_curves(pretrain, finetune, out, title, size)

    return draw


#: name -> figure; ``scpt figures`` draws them all, in this order.
FIGURES: dict[str, FigureSpec] = {
    "losses_time": FigureSpec(
        ("experiments/benchmarks/records/losses.csv",),
        "experiments/benchmarks/losses_time.png",
        "loss benchmark: forward + backward time vs N per method (quiet record of 2026-11-27)",
        LOSSES_SIZE,
        lambda records, out, size: plot_losses_time(records, out, "2026-11-27", size, "quiet machine"),
    ),
    "losses_memory": FigureSpec(
        ("experiments/benchmarks/records/losses.csv",),
        "experiments/benchmarks/losses_memory.png",
        "loss benchmark: peak RSS increase vs N per method (record of 2026-11-27)",
        LOSSES_SIZE,
        lambda records, out, size: plot_losses_memory(records, out, "2026-11-27", size, "quiet machine"),
    ),
    "grad_cache_memory": FigureSpec(
        ("experiments/benchmarks/records/grad_cache.csv",),
        "experiments/benchmarks/grad_cache_memory.png",
        "phase 1 step: peak memory vs N with and without gradient caching",
        GRAD_CACHE_SIZE,
        lambda records, out, size: plot_grad_cache_memory(records, out, size=size),
    ),
    "restaurants_curves": FigureSpec(
        ("experiments/scapt_restaurants/records/pretrain.csv", "experiments/scapt_restaurants/records/finetune.csv"),
        "experiments/scapt_restaurants/learning_curves.png",
        "Restaurant pipeline: phase 1 terms, probe, mean cosine; phase 2 dev accuracy / macro-F1 per arm and seed",
        PIPELINE_SIZE,
        _pipeline("Restaurant", "scpt pipeline --config configs/pipeline/restaurants.yaml"),
    ),
    "laptops_curves": FigureSpec(
        ("experiments/scapt_laptops/records/pretrain.csv", "experiments/scapt_laptops/records/finetune.csv"),
        "experiments/scapt_laptops/learning_curves.png",
        "Laptop pipeline: phase 1 terms, probe, mean cosine; phase 2 dev accuracy / macro-F1 per arm and seed",
        PIPELINE_SIZE,
        _pipeline("Laptop", "scpt pipeline --config configs/pipeline/laptops.yaml"),
    ),
    "collapse_probe_curves": FigureSpec(
        ("experiments/collapse/records",),
        "experiments/collapse/probe_curves.png",
        "collapse study: held-out probe, mean cosine and loss / collapsed value vs examples seen, per run",
        COLLAPSE_SIZE,
        lambda records, out, size: plot_collapse_probe_curves(records, out, size=size),
    ),
    "lout_vs_lin": FigureSpec(
        ("experiments/lout_vs_lin/records/results.json",),
        "experiments/lout_vs_lin/lout_vs_lin.png",
        "L_out vs L_in in phase 1: held-out probes, and phase-2 test metrics per seed, per dataset",
        (11.0, 7.0),
        lambda records, out, size: plot_lout_vs_lin(records, out, size=size),
    ),
    "dscl_long_tail": FigureSpec(
        ("experiments/dscl_long_tail/records/results.json",),
        "experiments/dscl_long_tail/long_tail.png",
        "DSCL alpha sweep vs SupCon L_out on a 10:1 long-tailed corpus: per-class held-out recall, macro-F1, tail F1",
        (13.0, 4.6),
        lambda records, out, size: plot_dscl_long_tail(records, out, size=size),
    ),
    "sweep_heatmaps": FigureSpec(
        ("experiments/sweeps/records/one_view/trials.csv", "experiments/sweeps/records/two_views/trials.csv"),
        "experiments/sweeps/heatmaps.png",
        "DSCL tau x alpha sweep in phase 1: held-out 10-NN probe, one view beside two views",
        (11.0, 4.4),
        lambda one, two, out, size: plot_sweep_heatmaps(one, two, out, size=size),
    ),
}


def missing_inputs(spec: FigureSpec, root: Path) -> list[Path]:
    """The records of ``spec`` that are not under ``root`` (a records folder must hold ``*.jsonl`` files)."""
    missing = []
    for relative in spec.inputs:
        path = root / relative
        if not path.exists() or (path.is_dir() and not any(path.glob("*.jsonl"))):
            missing.append(path)
    return missing


def draw_figure(name: str, root: Path = Path(".")) -> Path:
    """Draw the figure ``name`` of :data:`FIGURES` from its records under ``root``; returns the PNG's path."""
    spec = FIGURES[name]
    missing = missing_inputs(spec, root)
    if missing:
        raise UserError(
            f"{name}: records file {', '.join(map(str, missing))} is missing "
            "(run from the repository root, or pass --root)"
        )
    out = root / spec.output
    inputs = [root / relative for relative in spec.inputs]
    try:
        spec.draw(*inputs, out, size=spec.size)
    except (KeyError, ValueError) as error:  # a record without a column, truncated JSON, bytes that are not UTF-8
        problem = f"no field {error}" if isinstance(error, KeyError) else " ".join(str(error).split())
        raise UserError(
            f"{name}: its records ({', '.join(map(str, inputs))}) cannot be read: {problem}; "
            "are they the records scpt wrote? (--traceback shows where)"
        ) from error
    return out


def main(argv: list[str]) -> int:
    """``scpt figures [NAME ...] [--list] [--root DIR]``."""
    parser = argparse.ArgumentParser(
        prog="scpt figures",
        description="Redraw the experiments' figures from the run records committed under experiments/ "
        "(default: every figure), writing each PNG beside its records and printing its path.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="figures to draw: " + ", ".join(FIGURES))
    parser.add_argument("--list", action="store_true", help="list the figures, their records and PNGs, and exit")
    parser.add_argument(
        "--root", type=Path, default=Path("."), help="the repository checkout to read and write (default: .)"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in FIGURES]
    if unknown:
        raise UserError(f"unknown figure {', '.join(unknown)} (choose from {', '.join(FIGURES)})")
    names = list(dict.fromkeys(args.names)) or list(FIGURES)
    if args.list:
        width = max(map(len, FIGURES))
        for name in names:
            spec = FIGURES[name]
            print(f"{name:<{width}}  {spec.output}  <- {', '.join(spec.inputs)}\n{'':<{width}}  {spec.description}")
        return 0
    for name in names:  # every figure's records first: fail before drawing anything
        missing = missing_inputs(FIGURES[name], args.root)
        if missing:
            raise UserError(
                f"{name}: records file {', '.join(map(str, missing))} is missing "
                "(run from the repository root, or pass --root)"
            )
    for name in names:
        print(draw_figure(name, args.root), flush=True)
    return 0


__all__ = [
    "DPI",
    "FIGURES",
    "FigureSpec",
    "GradCachePoint",
    "LossCell",
    "copy_pipeline_records",
    "draw_collapse_probe_curves",
    "draw_figure",
    "main",
    "plot_collapse_probe_curves",
    "plot_grad_cache_memory",
    "plot_losses_memory",
    "plot_losses_time",
    "plot_pipeline_curves",
    "read_collapse_runs",
    "read_csv_records",
    "read_finetune_curves",
    "read_grad_cache",
    "read_loss_benchmark",
    "read_metrics",
]
