"""Dashboards: the run's configuration, figures of the representations and of the classifier's errors,
for whichever loggers a run has.

The math and the drawing are pure functions, separate from the training loop:

- :func:`project_2d`: features ``[N, D]`` -> points ``[N, 2]``. t-SNE (scikit-learn, Barnes-Hut, PCA
  initialisation, fixed ``random_state``, one thread) up to :data:`TSNE_MAX_POINTS` points, PCA above.
  Measured on a shared 2-core CPU, 512 x 256 features (phase 1's default held-out slice): t-SNE ~2 s
  (CPU time 1.9 s), PCA ~0.03 s; t-SNE's time grows a little faster than N (~4 s at 1024 points), so
  PCA takes over above 1024 points. t-SNE keeps local neighbourhoods (clusters, their overlap); its
  distances between clusters and its axes mean nothing. PCA's axes are the directions of largest variance.
- :func:`scatter_figure`, :func:`confusion_matrix_figure`: matplotlib figures drawn on an Agg canvas
  without pyplot (no global state, no backend switch, nothing to close).

:func:`log_figure` and :func:`log_table` hand them to the loggers:

=====================  ==================================================================================
logger                 receives
=====================  ==================================================================================
``WandbLogger``        the figure as an image under ``key``; a table as a ``wandb.Table`` under
                       ``key + "_table"`` (both with ``trainer/global_step``)
``TensorBoardLogger``  the figure as an image under ``key`` at ``step`` (tables: none; scalars come
                       from ``self.log``)
any other, or none     a PNG file, ``<log_dir or trainer.default_root_dir>/<png_name>``
=====================  ==================================================================================

:func:`announce_run` logs the resolved configuration as flat hyperparameters to every logger and tags a
W&B run with its phase; the W&B group is left to ``WANDB_RUN_GROUP`` (which wandb reads, offline too).

matplotlib and scikit-learn are imported inside the functions, so ``import scpt`` stays light.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from matplotlib.figure import Figure
    from pytorch_lightning.loggers import Logger

#: Above this many points :func:`project_2d` ("auto") uses PCA: t-SNE's cost grows as N log N per
#: iteration, ~4 s for 1024 points (one thread), against ~2 s for 512.
TSNE_MAX_POINTS = 1024

#: t-SNE's perplexity (scikit-learn's default), capped at (N - 1) / 3 for small N.
TSNE_PERPLEXITY = 30.0

#: A run's loggers: a Trainer (its ``loggers``, ``default_root_dir`` and rank) or the loggers themselves.
Target = Union["pl.Trainer", Sequence["Logger"]]

#: A table: its column names and its rows.
TableData = tuple[Sequence[str], Sequence[Sequence[Any]]]

ProjectionMethod = Literal["auto", "tsne", "pca"]


# --------------------------------------------------------------------------------------------------
# The math
# --------------------------------------------------------------------------------------------------


def projection_method(num_points: int, method: ProjectionMethod = "auto") -> Literal["tsne", "pca"]:
    """The method :func:`project_2d` uses for ``num_points`` points: t-SNE up to :data:`TSNE_MAX_POINTS`
    ("auto"; t-SNE needs at least 4 points), else PCA."""
    if method not in ("auto", "tsne", "pca"):
        raise ValueError(f"projection method must be 'auto', 'tsne' or 'pca', got {method!r}")
    if method == "pca" or num_points < 4:
        return "pca"
    if method == "tsne":
        return "tsne"
    return "tsne" if num_points <= TSNE_MAX_POINTS else "pca"


def _sklearn() -> tuple[type, type, Any]:
    """``(PCA, TSNE, threadpool_limits)``, imported without moving Python's global random state (the first
    import of scikit-learn draws from it; an exact resume restores that state and expects no one else to)."""
    state = random.getstate()
    try:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
    finally:
        random.setstate(state)
    return PCA, TSNE, threadpool_limits


def project_2d(features: Tensor | np.ndarray, seed: int = 0, method: ProjectionMethod = "auto") -> np.ndarray:
    """Points ``[N, 2]`` (float64, finite) for ``features`` ``[N, D]``, deterministic for a ``seed``.

    t-SNE: Euclidean distances (on L2-normalised features, a monotone function of cosine similarity),
    perplexity ``min(30, (N - 1) / 3)``, PCA initialisation, ``random_state=seed``. PCA: the two
    principal components (sign fixed by scikit-learn's ``svd_flip``). Features without spread (every row
    equal: a collapsed representation) give all-zero points; with fewer than 2 rows or columns the
    missing coordinates are 0.
    """
    x = features.detach().float().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features, np.float32)
    if x.ndim != 2:
        raise ValueError(f"project_2d expects features [N, D], got shape {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError("project_2d: the features hold NaN or inf")
    num_points = x.shape[0]
    points = np.zeros((num_points, 2), dtype=np.float64)
    spread = float(np.abs(x - x.mean(axis=0, keepdims=True)).max()) if num_points else 0.0
    if num_points < 2 or spread <= 1e-12 * max(1.0, float(np.abs(x).max())):
        return points
    PCA, TSNE, threadpool_limits = _sklearn()
    # one thread: OpenMP/BLAS pools spin-wait badly on a busy machine (t-SNE of 512 points took 30-40 s with
    # all threads on 2 loaded cores, ~2 s with one), and one thread fixes the order of the gradient's sums
    with threadpool_limits(limits=1):
        if projection_method(num_points, method) == "tsne":
            perplexity = min(TSNE_PERPLEXITY, (num_points - 1) / 3)
            tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
            projected = tsne.fit_transform(x).astype(np.float64)
            if np.isfinite(projected).all():
                return projected
        components = min(2, num_points, x.shape[1])  # PCA, or t-SNE's fallback (never seen)
        pca = PCA(n_components=components, svd_solver="full", random_state=seed)
        points[:, :components] = pca.fit_transform(x)
    return points


# --------------------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas, outside pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def class_name(label: int, class_names: Sequence[str] | None) -> str:
    """``class_names[label]`` when there is one, else the label as text."""
    return class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)


def scatter_figure(
    points: np.ndarray, labels: Tensor | np.ndarray, class_names: Sequence[str] | None = None, title: str = ""
) -> Figure:
    """A scatter plot of ``points`` ``[N, 2]`` coloured by ``labels`` ``[N]`` (integer class ids), with a
    legend of ``class_names`` (indexed by id; ids without a name are shown as numbers)."""
    labels = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if points.shape != (labels.shape[0], 2):
        raise ValueError(f"scatter_figure: points {points.shape} and labels {labels.shape} do not match [N, 2], [N]")
    from matplotlib import colormaps

    figure = _new_figure(6.0, 5.5)
    axes = figure.add_subplot()
    palette = colormaps["tab10"]
    for i, label in enumerate(np.unique(labels).tolist()):
        chosen = labels == label
        axes.scatter(
            points[chosen, 0], points[chosen, 1], s=10, alpha=0.7, color=palette(i % 10),
            label=f"{class_name(int(label), class_names)} ({int(chosen.sum())})",
        )  # fmt: skip
    if labels.shape[0]:
        axes.legend(loc="best", fontsize="small", markerscale=2)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title)
    return figure


def confusion_matrix_figure(matrix: Tensor | np.ndarray, class_names: Sequence[str], title: str = "") -> Figure:
    """A heat map of ``matrix`` ``[C, C]`` (counts; row = true class, column = predicted), each cell
    coloured by its share of the row (the class's recall on the diagonal) and labelled with its count."""
    counts = matrix.cpu().numpy() if isinstance(matrix, Tensor) else np.asarray(matrix)
    num_classes = len(class_names)
    if counts.shape != (num_classes, num_classes):
        raise ValueError(f"confusion_matrix_figure: matrix {counts.shape} does not match {num_classes} class names")
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    figure = _new_figure(1.6 + 1.1 * num_classes, 1.2 + 1.0 * num_classes)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(num_classes):
        for j in range(num_classes):
            colour = "white" if shares[i, j] > 0.5 else "black"
            axes.text(j, i, f"{int(counts[i, j])}\n{shares[i, j]:.0%}", ha="center", va="center", color=colour)
    axes.set_xticks(range(num_classes), labels=list(class_names))
    axes.set_yticks(range(num_classes), labels=list(class_names))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="share of the true class")
    return figure


def figure_image(figure: Figure) -> np.ndarray:
    """The rendered figure as an RGB image ``[H, W, 3]`` (uint8)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def confusion_table(matrix: Tensor | np.ndarray, class_names: Sequence[str]) -> TableData:
    """The confusion matrix as a table: column ``true``, then one column of counts per predicted class."""
    counts = matrix.cpu().numpy() if isinstance(matrix, Tensor) else np.asarray(matrix)
    columns = ["true", *(f"predicted_{name}" for name in class_names)]
    return columns, [[name, *(int(c) for c in counts[i])] for i, name in enumerate(class_names)]


# --------------------------------------------------------------------------------------------------
# The loggers
# --------------------------------------------------------------------------------------------------


def _loggers_and_root(target: Target) -> tuple[list[Logger], Path | None, bool]:
    """``(loggers, default root directory or None, whether this process logs)``."""
    if hasattr(target, "loggers"):  # a Trainer; fast_dev_run writes nothing (its logger is a dummy)
        logs = bool(target.is_global_zero) and not getattr(target, "fast_dev_run", False)
        return list(target.loggers), Path(target.default_root_dir), logs
    return list(target), None, True


def _kind(logger: Logger) -> Literal["wandb", "tensorboard", "other"]:
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

    if isinstance(logger, WandbLogger):
        return "wandb"
    return "tensorboard" if isinstance(logger, TensorBoardLogger) else "other"


def png_directory(target: Target) -> Path:
    """Where PNG figures go: the ``log_dir`` (else ``save_dir``) of the first logger that is neither W&B
    nor TensorBoard, else the trainer's ``default_root_dir``, else the working directory."""
    loggers, root, _ = _loggers_and_root(target)
    for logger in loggers:
        if _kind(logger) == "other":
            directory = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
            if directory:
                return Path(directory)
    return root if root is not None else Path.cwd()


def log_figure(
    target: Target,
    key: str,
    figure: Figure,
    step: int,
    table: TableData | None = None,
    png_name: str | None = None,
) -> Path | None:
    """Hand ``figure`` (and ``table``, for W&B) to each logger of ``target`` (see the module docstring).

    Only the global-rank-0 process logs (given a Trainer). A PNG file is written when some logger is
    neither W&B nor TensorBoard, or there is no logger, at ``png_directory(target) / png_name`` (default:
    ``<key with '/' as '_'>/step_<step>.png``); its path is returned (``None`` when none was written).
    """
    loggers, _, logs = _loggers_and_root(target)
    if not logs:
        return None
    kinds = [_kind(logger) for logger in loggers]
    image = figure_image(figure) if any(kind != "other" for kind in kinds) else None
    for logger, kind in zip(loggers, kinds):
        if kind == "wandb":
            logger.log_image(key=key, images=[image], step=step)
            if table is not None:
                columns, rows = list(table[0]), [list(row) for row in table[1]]
                logger.log_table(key=f"{key}_table", columns=columns, data=rows, step=step)
        elif kind == "tensorboard":
            logger.experiment.add_image(key, image, global_step=step, dataformats="HWC")
    if loggers and "other" not in kinds:
        return None
    path = png_directory(target) / (png_name or f"{key.replace('/', '_')}/step_{step}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def log_table(target: Target, key: str, table: TableData, step: int) -> bool:
    """Log ``table`` as a ``wandb.Table`` under ``key`` to each W&B logger (rank 0); True if there was one.
    Other loggers get nothing: they hold the same values as scalars."""
    loggers, _, logs = _loggers_and_root(target)
    wandb_loggers = [logger for logger in loggers if _kind(logger) == "wandb"]
    if logs:
        for logger in wandb_loggers:
            logger.log_table(key=key, columns=list(table[0]), data=[list(r) for r in table[1]], step=step)
    return bool(wandb_loggers)


# --------------------------------------------------------------------------------------------------
# The run's configuration and tags
# --------------------------------------------------------------------------------------------------


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as flat ``outer.inner`` keys; tuples become lists; keys starting with ``_``
    (LightningCLI's ``_class_path``) are left out."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if str(key).startswith("_"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def run_config(trainer: pl.Trainer, phase: str, described: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run's resolved configuration as flat keys: ``phase``; the module's and the datamodule's
    hyperparameters; ``described`` (e.g. the objective's loss class, temperature, lambdas); and what the
    trainer resolves: ``world_size``, ``accumulate_grad_batches``, ``global_batch_size`` (per-process
    ``batch_size`` x processes x accumulation), ``precision``, ``max_epochs``, ``max_steps``, ``seed``
    (when ``seed_everything`` ran), ``class_names`` and, for a corpus of several sources, ``dataset``
    (``in_domain`` names and ``files`` stems joined by ``+``)."""
    module, datamodule = trainer.lightning_module, trainer.datamodule
    data_hparams = flatten(getattr(datamodule, "hparams_initial", None) or {})
    config: dict[str, Any] = {"phase": phase, **flatten(module.hparams_initial), **data_hparams}
    config.update(flatten(described or {}))
    if "dataset" not in config:
        sources = [*(data_hparams.get("in_domain") or []), *(Path(f).stem for f in data_hparams.get("files") or [])]
        if sources:
            config["dataset"] = "+".join(sources)
    config["world_size"] = trainer.world_size
    config["accumulate_grad_batches"] = trainer.accumulate_grad_batches
    batch_size = data_hparams.get("batch_size")
    if isinstance(batch_size, int):
        config["global_batch_size"] = batch_size * trainer.world_size * trainer.accumulate_grad_batches
    config["precision"] = str(trainer.precision)
    config["max_epochs"], config["max_steps"] = trainer.max_epochs, trainer.max_steps
    seed = os.environ.get("PL_GLOBAL_SEED")  # set by seed_everything (the CLI's seed_everything)
    if seed is not None:
        config["seed"] = int(seed)
    names = getattr(datamodule, "class_names", None) or getattr(module, "class_names", None)
    if names:
        config["class_names"] = list(names)
    return config


def tag_wandb_runs(loggers: Iterable[Logger], tags: Iterable[str]) -> None:
    """Add ``tags`` (those it lacks) to the run of each W&B logger. The group is not touched: runners set
    it through ``WANDB_RUN_GROUP``."""
    for logger in loggers:
        if _kind(logger) != "wandb":
            continue
        run = logger.experiment
        missing = [tag for tag in tags if tag not in (run.tags or ())]
        if missing:
            run.tags = (*(run.tags or ()), *missing)


def announce_run(trainer: pl.Trainer, phase: str, described: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Log :func:`run_config` to every logger as hyperparameters and tag W&B runs with ``phase`` (rank 0)."""
    config = run_config(trainer, phase, described)
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
        tag_wandb_runs(trainer.loggers, [phase])
    return config


__all__ = [
    "TSNE_MAX_POINTS",
    "TableData",
    "Target",
    "announce_run",
    "class_name",
    "confusion_matrix_figure",
    "confusion_table",
    "figure_image",
    "flatten",
    "log_figure",
    "log_table",
    "png_directory",
    "project_2d",
    "projection_method",
    "run_config",
    "scatter_figure",
    "tag_wandb_runs",
]
