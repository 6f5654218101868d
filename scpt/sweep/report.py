"""``scpt sweep report``: every trial of a sweep as a table, the best configuration, and a heatmap.

Files, in the sweep's directory (or ``--output-dir``):

- ``trials.csv`` and ``trials.md``: one row per trial: number, state, each swept parameter, the metric,
  seconds, error (a failed trial's last log line; the CSV keeps the whole recorded tail). Values are
  written as recorded (Python's shortest round-trip ``repr`` of each float), so the table holds exactly
  what the study holds; ``trials.md`` ends with the best configuration.
- ``best.json``: the best trial's number, metric value and parameters (all of them, constants too).
- ``heatmap.png``: the metric over the first two swept parameters (``heatmap_matrix``: rows = the
  second parameter's values, columns = the first's; each cell the best finished trial there, annotated;
  a cell with only failed trials is hatched and marked "failed", one with none is blank). One swept
  parameter: a single row.

With W&B on (wandb importable, ``WANDB_MODE`` not ``disabled``) the table and the heatmap are also
logged to a W&B run named ``<study>-report`` in the sweep's group (``WANDB_PROJECT``, default ``scpt``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scpt.errors import UserError
from scpt.training.files import write_atomically

if TYPE_CHECKING:
    import optuna

FIXED_COLUMNS = ("number", "state")


def value_text(value: Any) -> str:
    """A recorded value as a table cell: floats by ``repr`` (exact), ``None`` as empty, others by ``str``."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def open_report_study(
    source: Path | None, study_name: str | None, storage: str | None
) -> tuple[optuna.Study, Path, dict[str, Any]]:
    """The study a report is about, the sweep's directory and the sweep settings recorded in the study.

    ``source`` is the sweep file (study: its name; storage: ``runs/sweeps/<name>/study.db``) or the sweep's
    directory (storage: its ``study.db``; study: the only one there); ``study_name``/``storage`` override.

    Raises:
        UserError: nothing to read, no such study, or several studies and no ``--study-name``.
    """
    import optuna

    from scpt.sweep.runner import default_output_dir, default_storage, make_storage

    directory: Path | None = None
    if source is not None and source.is_file():
        from scpt.sweep.spec import load_sweep

        study_name = study_name or load_sweep(source).name
        directory = default_output_dir(study_name)
    elif source is not None and source.is_dir():
        directory = source
        if storage is None and not (source / "study.db").is_file():
            raise UserError(f"{source}: no study.db here (give the sweep's directory, or --storage)")
    elif source is not None:
        raise UserError(f"{source}: neither a sweep file nor a sweep directory")
    elif storage is None:
        raise UserError("give the sweep file or its directory, or --storage (with --study-name)")
    url = storage or default_storage(directory)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise UserError(f"{url.removeprefix('sqlite:///')}: no sweep has run here yet (no study file)")
    rdb = make_storage(url, heartbeat=None)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(rdb, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            raise UserError(f"{url} holds {len(names)} studies ({', '.join(names) or 'none'}): give --study-name")
        study_name = names[0]
    if study_name not in names:
        raise UserError(f"{url} has no study '{study_name}' (it has: {', '.join(names) or 'none'})")
    study = optuna.load_study(study_name=study_name, storage=rdb)
    settings = study.user_attrs.get("sweep", {})
    if directory is None:
        directory = Path(settings.get("output_dir") or default_output_dir(study_name))
    return study, directory, settings


def parameter_names(study: optuna.Study, settings: dict[str, Any]) -> list[str]:
    """The swept parameters, in the sweep file's order (as recorded), else in order of first appearance."""
    names = list(settings.get("parameters") or [])
    for trial in study.get_trials(deepcopy=False):
        names += [name for name in trial.params if name not in names]
    return names


def trial_rows(study: optuna.Study, names: Sequence[str], metric: str) -> list[dict[str, Any]]:
    """One dict per trial (by number): ``number``, ``state``, each parameter, ``metric``, ``seconds``, ``error``."""
    rows = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        error = trial.user_attrs.get("error", "")
        if "duplicate_of" in trial.user_attrs:
            error = f"duplicate of trial {trial.user_attrs['duplicate_of']} (not run)"
        row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
        row.update({name: trial.params.get(name) for name in names})
        row[metric] = trial.value if trial.value is not None else None
        row["seconds"] = trial.user_attrs.get("seconds")
        row["error"] = error
        rows.append(row)
    return rows


def csv_text(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV with a header; cells by :func:`value_text`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([value_text(row.get(column)) for column in columns])
    return buffer.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_text(
    rows: list[dict[str, Any]], columns: Sequence[str], best: dict[str, Any] | None, title: str, metric: str
) -> str:
    """A markdown table of ``rows`` (a failed trial's error: its last line), then the best configuration."""
    lines = [f"# Sweep {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            text = value_text(row.get(column))
            if column == "error" and text:
                text = text.splitlines()[-1]
            cells.append(_md_cell(text))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if best is None:
        lines.append("Best: none (no finished trial).")
    else:
        params = ", ".join(f"`{name}` = {value_text(value)}" for name, value in best["params"].items())
        lines.append(f"Best: trial {best['number']}, {metric} = {value_text(best['value'])}: {params}.")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Heatmap:
    """The metric over two parameters: ``values[i][j]`` at ``y = y_values[i]``, ``x = x_values[j]``
    (NaN: no finished trial), ``failed[i][j]``: only failed trials there."""

    x_name: str
    y_name: str | None
    x_values: list[Any]
    y_values: list[Any]
    values: list[list[float]]
    failed: list[list[bool]]


def heatmap_matrix(
    rows: list[dict[str, Any]],
    x_name: str,
    y_name: str | None,
    metric: str,
    goal: str = "maximize",
    x_values: Sequence[Any] | None = None,
    y_values: Sequence[Any] | None = None,
) -> Heatmap:
    """The :class:`Heatmap` of ``rows`` (:func:`trial_rows`): each cell the best (per ``goal``) finished value
    at that (x, y); axis values as given (a grid's order) or the sorted values seen."""

    def axis(name: str | None, given: Sequence[Any] | None) -> list[Any]:
        if name is None:
            return [None]
        if given is not None:
            return list(given)
        seen = {json.dumps(row[name]): row[name] for row in rows if row.get(name) is not None}
        return sorted(seen.values(), key=lambda v: (isinstance(v, str), v))

    xs, ys = axis(x_name, x_values), axis(y_name, y_values)
    keys_x, keys_y = [json.dumps(x) for x in xs], [json.dumps(y) for y in ys]
    values = [[math.nan] * len(xs) for _ in ys]
    failed = [[False] * len(xs) for _ in ys]
    better = max if goal == "maximize" else min
    for row in rows:
        kx = json.dumps(row.get(x_name))
        ky = json.dumps(row.get(y_name)) if y_name is not None else json.dumps(None)
        if kx not in keys_x or ky not in keys_y:
            continue
        i, j = keys_y.index(ky), keys_x.index(kx)
        value = row.get(metric)
        if row["state"] == "COMPLETE" and value is not None:
            values[i][j] = value if math.isnan(values[i][j]) else better(values[i][j], value)
        elif row["state"] == "FAIL":
            failed[i][j] = True
    failed = [[failed[i][j] and math.isnan(values[i][j]) for j in range(len(xs))] for i in range(len(ys))]
    return Heatmap(x_name, y_name, xs, ys, values, failed)


def draw_heatmap(heatmap: Heatmap, path: Path, metric: str, title: str) -> None:
    """Draw ``heatmap`` as a PNG (matplotlib, Agg): a cell per (x, y), annotated with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.array(heatmap.values, dtype=float)
    width = max(4.0, 1.2 * len(heatmap.x_values) + 2.5)
    height = max(2.5, 0.9 * len(heatmap.y_values) + 1.8)
    figure, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=ax, label=metric)
    finite = data[np.isfinite(data)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if heatmap.failed[i][j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="xx", color="tab:red"))
                ax.text(j, i, "failed", ha="center", va="center", color="tab:red", fontsize=9)
            elif np.isfinite(data[i, j]):
                color = "black" if data[i, j] > middle else "white"
                ax.text(j, i, f"{data[i, j]:.4g}", ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(heatmap.x_values)), [value_text(v) for v in heatmap.x_values])
    ax.set_xlabel(heatmap.x_name)
    if heatmap.y_name is None:
        ax.set_yticks([])
    else:
        ax.set_yticks(range(len(heatmap.y_values)), [value_text(v) for v in heatmap.y_values])
        ax.set_ylabel(heatmap.y_name)
    ax.set_title(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def wandb_enabled() -> bool:
    """Whether W&B logging is on: ``WANDB_MODE`` is not ``disabled`` and wandb is importable."""
    if os.environ.get("WANDB_MODE", "").lower() == "disabled":
        return False
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def _wandb_api_key() -> str | None:
    """The W&B API key this machine would use (``WANDB_API_KEY`` or ``wandb login``'s netrc entry), or None."""
    if os.environ.get("WANDB_API_KEY"):
        return os.environ["WANDB_API_KEY"]
    try:
        import netrc

        entry = netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1])
    except (OSError, netrc.NetrcParseError):
        return None
    return entry[2] if entry else None


def log_to_wandb(
    study_name: str, directory: Path, rows: list[dict[str, Any]], columns: Sequence[str], heatmap_path: Path | None
) -> str:
    """Log the table and the heatmap to a W&B run ``<study>-report`` in the sweep's group; returns its directory."""
    import wandb

    # offline unless a server is configured: WANDB_MODE, or an API key (wandb login / WANDB_API_KEY)
    mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_api_key() else "offline")
    run = wandb.init(
        mode=mode,
        project=os.environ.get("WANDB_PROJECT", "scpt"),
        group=study_name,
        job_type="sweep-report",
        name=f"{study_name}-report",
        dir=str(directory),
        reinit="finish_previous",
    )
    try:
        table = wandb.Table(columns=list(columns), data=[[value_text(row.get(c)) for c in columns] for row in rows])
        logged: dict[str, Any] = {"trials": table}
        if heatmap_path is not None:
            logged["heatmap"] = wandb.Image(str(heatmap_path))
        run.log(logged)
        return str(run.dir)
    finally:
        run.finish()


def write_report(
    source: Path | None,
    study_name: str | None = None,
    storage: str | None = None,
    output_dir: Path | None = None,
    use_wandb: bool = True,
) -> list[Path]:
    """Write ``trials.csv``, ``trials.md``, ``best.json`` and ``heatmap.png``; returns the paths written."""
    study, directory, settings = open_report_study(source, study_name, storage)
    output_dir = output_dir or directory
    metric = settings.get("metric", "value")
    goal = settings.get("goal", study.direction.name.lower())
    names = parameter_names(study, settings)
    rows = trial_rows(study, names, metric)
    columns = [*FIXED_COLUMNS, *names, metric, "seconds", "error"]
    finished = [t for t in study.get_trials(deepcopy=False) if t.value is not None and t.state.name == "COMPLETE"]
    best = None
    if finished:
        trial = study.best_trial
        best = {
            "number": trial.number,
            "value": trial.value,
            "metric": metric,
            "goal": goal,
            "params": {name: trial.params[name] for name in names if name in trial.params},
            "command": trial.user_attrs.get("command"),
            "trial_dir": trial.user_attrs.get("trial_dir"),
        }
    title = f"{study.study_name}: {metric} ({goal})"
    paths = [output_dir / "trials.csv", output_dir / "trials.md", output_dir / "best.json"]
    write_atomically(paths[0], csv_text(rows, columns), overwrite=True)
    write_atomically(paths[1], markdown_text(rows, columns, best, title, metric), overwrite=True)
    write_atomically(paths[2], json.dumps(best, indent=2) + "\n", overwrite=True)
    heatmap_path = None
    if names:
        grid = settings.get("grid") or {}
        x_name, y_name = names[0], (names[1] if len(names) > 1 else None)
        heatmap = heatmap_matrix(rows, x_name, y_name, metric, goal, grid.get(x_name), grid.get(y_name))
        heatmap_path = output_dir / "heatmap.png"
        draw_heatmap(heatmap, heatmap_path, metric, title)
        paths.append(heatmap_path)
    if use_wandb and wandb_enabled():
        try:
            log_to_wandb(study.study_name, output_dir, rows, columns, heatmap_path)
        except Exception as error:  # W&B is optional here: not logged in, no network
            print(f"[sweep report] W&B logging skipped: {str(error).splitlines()[0] if str(error) else error!r}")
    return paths


__all__ = [
    "Heatmap",
    "csv_text",
    "draw_heatmap",
    "heatmap_matrix",
    "markdown_text",
    "open_report_study",
    "trial_rows",
    "write_report",
]
