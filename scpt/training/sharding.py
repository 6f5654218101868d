"""Data across processes: each process's share of the batches, the seed they share, and evaluation
results gathered back without repeats (docs/design.md §3, "Splitting the data").

scpt's batch samplers (:mod:`scpt.data.sampling`) split the data over the W processes themselves, so
Lightning must not replace them with its ``DistributedSampler``: the Trainer runs with
``use_distributed_sampler=False`` (scpt's CLI default, and ``configs/trainer/ddp*.yaml``). Lightning's
sampler would pad uneven shards by repeating examples, which counts them twice in every evaluation
metric; scpt's evaluation shards are uneven instead, and :func:`gather_rows` collects them exactly.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor

from scpt.data.sampling import ResumableDataLoader
from scpt.training.resume import batches_trained


def process_split(trainer: pl.Trainer | None) -> tuple[int, int]:
    """``(W, rank)``: the trainer's number of processes and this one's global rank; ``(1, 0)`` without one.

    Raises:
        ValueError: W > 1 and the trainer would wrap the batch samplers in a ``DistributedSampler``.
    """
    if trainer is None or trainer.world_size == 1:
        return 1, 0
    connector = getattr(trainer, "_accelerator_connector", None)
    if getattr(connector, "use_distributed_sampler", False):
        raise ValueError(
            f"trainer.world_size = {trainer.world_size}: scpt's batch samplers split the data over the processes, "
            "so Lightning must not add its DistributedSampler: set trainer.use_distributed_sampler: false "
            "(Trainer(use_distributed_sampler=False); scpt's CLI and configs/trainer/ddp*.yaml do)"
        )
    return trainer.world_size, trainer.global_rank


def shared_seed(trainer: pl.Trainer | None) -> int | None:
    """A sampler seed every process shares: one draw from rank 0's global generator (so ``seed_everything``
    reproduces it), broadcast under W > 1; ``None`` without a trainer (the samplers then draw each epoch's
    seed from the global generator). Every rank draws once, so the global generators advance alike. A
    collective: call it on every rank (Lightning requests the dataloaders on every rank).

    Seeded samplers plan every epoch from ``seed + epoch`` and draw nothing from the global generator
    after they are made, which an exact mid-epoch resume needs (:mod:`scpt.training.resume`)."""
    if trainer is None:
        return None
    draw = int(torch.randint(2**62, ()).item())
    if trainer.world_size == 1:
        return draw
    return int(trainer.strategy.broadcast(draw, src=0))


def training_loader(
    dataset: Any, batch_sampler: Any, collate_fn: Any, num_workers: int, trainer: pl.Trainer | None, seed: int | None
) -> ResumableDataLoader:
    """The training ``DataLoader`` of both phases: resumable mid-epoch (Lightning saves its position with
    each checkpoint, counted by the fit loop: :func:`scpt.training.resume.batches_trained`), and with its
    own generator (seeded from ``seed``) for the workers' seeds, so that starting an epoch draws nothing
    from the global generator."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loader = ResumableDataLoader(
        dataset, batch_sampler=batch_sampler, collate_fn=collate_fn, num_workers=num_workers, generator=generator
    )
    if trainer is not None:
        loader.batches_done = lambda: batches_trained(trainer)
    return loader


def pad_rows(rows: Tensor, length: int) -> Tensor:
    """``rows`` ``[n, ...]`` followed by zero rows: ``[length, ...]`` (``length >= n``)."""
    padded = rows.new_zeros((length, *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    return padded


def unpad_rows(gathered: Tensor, counts: Tensor) -> Tensor:
    """The real rows of ``gathered`` ``[W, L, ...]`` (process r's first ``counts[r]`` rows; ``counts`` ``[W]``),
    concatenated in rank order: ``[sum_r counts[r], ...]``."""
    real = torch.arange(gathered.shape[1], device=gathered.device)[None, :] < counts[:, None]  # [W, L]
    return gathered[real]


def gather_rows(rows: Tensor) -> Tensor:
    """``rows`` ``[n_r, ...]`` of every process, concatenated in rank order: ``[sum_r n_r, ...]``, no gradient.

    The processes may hold different numbers of rows (all_gather needs equal shapes): the counts are
    gathered first, each process pads its rows to the largest count, and the padding is dropped after
    the gather. No row is repeated or lost. On one process (or without a process group): ``rows``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    world = dist.get_world_size()
    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = [torch.empty_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    counts = torch.cat(counts)  # [W]
    padded = pad_rows(rows.detach(), int(counts.max()))
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return unpad_rows(torch.stack(parts), counts)


__all__ = ["gather_rows", "pad_rows", "process_split", "shared_seed", "training_loader", "unpad_rows"]
