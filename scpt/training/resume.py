"""Resuming a killed run exactly where it stopped, mid-epoch included, in the same run folder.

``fit --ckpt_path <run>/checkpoints/last.ckpt`` restores the weights, the optimiser and scheduler, and
Lightning's loop counters. Three more things make the resumed run the uninterrupted one, batch for batch
and dropout mask for dropout mask:

1. **The data position.** The training dataloaders are :class:`~scpt.data.sampling.ResumableDataLoader`:
   Lightning stores their state (the pass under way: its epoch, its generator seed, the batches already
   trained, :func:`batches_trained`) in the checkpoint and restores it before the first batch
   (:func:`restore_dataloader_state` makes sure it does), so the resumed epoch yields exactly the
   batches not yet trained on — none replayed, none skipped.
2. **The random state.** :func:`rng_state` (torch CPU and CUDA, NumPy, Python) is saved with each
   checkpoint and :func:`restore_rng_state` puts it back when training starts again, after the
   dataloaders were set up (:class:`~scpt.training.module.EncoderModule` does both). The samplers and
   the dataloaders draw from their own generators, seeded once when they are made, so nothing between
   the save and the next training step draws from the global generators in one run and not the other.
3. **The run folder.** :func:`continue_in_run_folder` points the loggers at the checkpoint's run folder
   (:func:`run_folder`: ``version_N`` of the CSV and TensorBoard loggers, the run id of W&B, whose run
   then continues) instead of a new one, so metrics continue in the same ``metrics.csv`` (its rows
   logged after the checkpoint, by the killed run, are dropped first: the resumed run logs them again)
   and checkpoints stay in the same ``checkpoints/`` folder.
"""

from __future__ import annotations

import csv
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

#: The checkpoint key of the random state saved with it.
RNG_RECORD_KEY = "scpt_rng_state"


def batches_trained(trainer: pl.Trainer) -> int:
    """The training batches of the current epoch whose training step has run (Lightning's fit loop count;
    a checkpoint saved after batch k, 0-based, records k + 1)."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


def restore_dataloader_state(trainer: pl.Trainer) -> bool:
    """Hand the checkpoint's training-dataloader state to the dataloaders, if Lightning has not; return
    whether it had to.

    Lightning restores a stateful dataloader when its fit loop first sets up the training data. But
    ``trainer.estimated_stepping_batches``, which ``configure_optimizers`` reads for the schedule, sets it
    up earlier, before the checkpoint's loop state is loaded, and the state then stays unapplied (the
    first batch already drawn from the beginning of epoch 0). Called from ``on_train_start`` (after the
    restore, before the first batch), this applies the state and restarts the data iterator. It uses the
    fit loop's private members as Lightning 2.6 has them; where they are missing or already consumed
    (a Lightning that applies the state itself) it does nothing.
    """
    loop = trainer.fit_loop
    pending = getattr(loop, "_combined_loader_states_to_load", None)
    fetcher = getattr(loop, "_data_fetcher", None)
    if not pending or fetcher is None or not loop.restarting or loop._combined_loader is None:
        return False
    loop._load_combined_loader_states()
    iter(fetcher)  # a fresh iterator over the restored position (the fetcher prefetches its first batch)
    return True


def rng_state() -> dict[str, Any]:
    """The global random generators' states, in types ``torch.load(weights_only=True)`` reads back."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the generators' states recorded by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_file_logger(logger: Any) -> bool:
    return type(logger).__name__ in ("CSVLogger", "TensorBoardLogger")


def _is_wandb_logger(logger: Any) -> bool:
    return type(logger).__name__ == "WandbLogger"


def run_folder(trainer: pl.Trainer) -> Path:
    """The run's folder, where its checkpoints go (``<folder>/checkpoints``, as Lightning's ``ModelCheckpoint``
    places them) and its ``config.yaml``: ``<save_dir>/<name>/version_N`` for the CSV and TensorBoard
    loggers, ``<save_dir>/<project>/<run id>`` for W&B, ``default_root_dir`` without a logger."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version


def checkpoint_run_folder(checkpoint: str | Path, logger_root: str | Path) -> str | None:
    """The first folder below ``logger_root`` on the way to ``checkpoint`` (``version_N``, or a W&B run id),
    when ``checkpoint`` lies at least one folder deep below ``logger_root``, else None."""
    checkpoint, logger_root = Path(checkpoint).absolute(), Path(logger_root).absolute()
    try:
        relative = checkpoint.relative_to(logger_root)
    except ValueError:
        return None
    return relative.parts[0] if len(relative.parts) > 1 else None


def _version_number(folder: str | None) -> int | None:
    if folder is not None and folder.startswith("version_") and folder[len("version_") :].isdigit():
        return int(folder[len("version_") :])
    return None


def continue_in_run_folder(trainer: pl.Trainer, checkpoint: str | Path | None) -> Path | None:
    """Make the file loggers write to the run folder that holds ``checkpoint``, when one does.

    Call before anything reads a logger's ``log_dir`` (that fixes its version). The rows of the folder's
    ``metrics.csv`` logged after the checkpoint's step are removed: the resumed run logs those steps
    again. Returns the run folder, or None when the checkpoint lies in none of the loggers' folders
    (then each logger starts a new version, as Lightning does).
    """
    if checkpoint is None or str(checkpoint) in ("best", "last", "hpc", "registry"):
        return None
    folder = None
    for logger in trainer.loggers:
        if _is_file_logger(logger):
            version = _version_number(checkpoint_run_folder(checkpoint, logger.root_dir))
            if version is None:
                continue
            logger._version = version  # what the ``version=`` argument sets; read by log_dir from now on
            folder = Path(logger.log_dir)
            if type(logger).__name__ == "CSVLogger" and trainer.is_global_zero:
                step = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["global_step"]
                _continue_csv(logger, folder / "metrics.csv", step)
        elif _is_wandb_logger(logger) and logger._experiment is None:
            run_id = checkpoint_run_folder(checkpoint, Path(logger.save_dir or trainer.default_root_dir) / logger.name)
            if run_id is None:
                continue
            logger._id = logger._wandb_init["id"] = run_id  # the W&B run continues (its resume="allow")
            folder = Path(logger.save_dir or trainer.default_root_dir) / logger.name / run_id
    return folder


def _continue_csv(logger: Any, metrics_csv: Path, step: int) -> None:
    """Let a CSV logger append to the ``metrics.csv`` of the run it continues, less the rows from ``step`` on.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it is made (warning that "previous log
    files will be deleted") and takes every column for new. So: read the rows, make the writer (silencing
    that warning, which does not apply), write back the rows before ``step``, and tell the writer the
    columns already there, so that it appends below them.
    """
    rows, header = _read_rows(metrics_csv)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
        writer = logger.experiment
    if header:
        _write_rows(metrics_csv, header, _rows_before(rows, step))
        writer.metrics_keys = sorted(set(writer.metrics_keys) | set(header))


def _read_rows(metrics_csv: Path) -> tuple[list[dict[str, str]], list[str]]:
    if not metrics_csv.is_file():
        return [], []
    with metrics_csv.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        return rows, list(reader.fieldnames or [])


def _rows_before(rows: list[dict[str, str]], step: int) -> list[dict[str, str]]:
    return [row for row in rows if not row.get("step") or int(float(row["step"])) < step]


def _write_rows(metrics_csv: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    partial = metrics_csv.with_name(metrics_csv.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(metrics_csv)


def drop_rows_after(metrics_csv: Path, step: int) -> int:
    """Remove the rows of a CSV logger's ``metrics.csv`` whose ``step`` is at least ``step`` (the resumed
    run, continuing from global step ``step``, logs them again); return how many were removed."""
    rows, header = _read_rows(metrics_csv)
    kept = _rows_before(rows, step)
    if len(kept) < len(rows):
        _write_rows(metrics_csv, header, kept)
    return len(rows) - len(kept)


__all__ = [
    "RNG_RECORD_KEY",
    "batches_trained",
    "checkpoint_run_folder",
    "continue_in_run_folder",
    "drop_rows_after",
    "restore_dataloader_state",
    "restore_rng_state",
    "rng_state",
    "run_folder",
]
