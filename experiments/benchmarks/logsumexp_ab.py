#!/usr/bin/env python
"""Paired timing of scpt's log-sum-exp against an earlier revision's, in one process, on a busy machine.

The loss benchmark (``losses.py``) times each method in its own process, one after another; when
another job shares the CPU, the load moves between those processes and a 10-30% difference drowns.
This script instead loads ``scpt/losses/logsumexp.py`` of ``--base`` (``git show``) beside the
working tree's and alternates the two inside one process: for every pair of passes the order flips
(base first, then new first), and the floor (``gpu_check.floor_pass``: the three matrix products and
two exp passes, in 8192-row chunks) runs after each pair. It reports the median time of each and the
median of the per-pair ratios, which a slow spell of the machine hits on both sides.

Only the log-sum-exp differs between the two sides: the losses (SupCon L_out and L_in, DSCL) are the
working tree's, with their module's ``similarity_logsumexp`` swapped. Loss values and input
gradients of the two sides are compared as well. Memory is not measured here (see ``losses.py``).

Usage:
    python experiments/benchmarks/logsumexp_ab.py --base 20219ce
    python experiments/benchmarks/logsumexp_ab.py --base HEAD --sizes 4096 --dims 128 --pairs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from gpu_check import floor_pass  # noqa: E402
from losses import cpu_model  # noqa: E402

import scpt.losses.dscl as dscl_module  # noqa: E402
import scpt.losses.supcon as supcon_module  # noqa: E402
from scpt.losses import DSCLLoss, SupConLoss  # noqa: E402
from scpt.losses.logsumexp import similarity_logsumexp  # noqa: E402

TEMPERATURE = 0.07
VIEWS = 2
NUM_CLASSES = 10  # as losses.py
LOSSES: dict[str, Callable[[], torch.nn.Module]] = {
    "scpt": lambda: SupConLoss(TEMPERATURE),
    "scpt-in": lambda: SupConLoss(TEMPERATURE, variant="in"),
    "scpt-dscl": lambda: DSCLLoss(TEMPERATURE, alpha=0.1),
}


def load_base(revision: str) -> Callable[..., tuple[Tensor, Tensor | None]]:
    """``similarity_logsumexp`` of ``scpt/losses/logsumexp.py`` at git ``revision``."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:scpt/losses/logsumexp.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("scpt_logsumexp_base")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:scpt/losses/logsumexp.py", "exec"), module.__dict__)
    return module.similarity_logsumexp


def use(function: Callable[..., tuple[Tensor, Tensor | None]]) -> None:
    """Make the losses call ``function`` for their log-sum-exp."""
    supcon_module.similarity_logsumexp = function
    dscl_module.similarity_logsumexp = function


def timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def compare(name: str, num_samples: int, dim: int, base: Callable, pairs: int) -> dict[str, float | str]:
    """Alternate base and new ``pairs`` times (order flipping), with a floor pass after each pair."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, NUM_CLASSES, (num_samples,), generator=g)
    features = torch.randn(num_samples, VIEWS, dim, generator=g).requires_grad_()
    loss_fn = LOSSES[name]()
    contrast = F.normalize(features.detach(), dim=-1).reshape(num_samples * VIEWS, dim)
    anchors = contrast / TEMPERATURE
    sides = {"base": base, "new": similarity_logsumexp}
    results: dict[str, tuple[float, Tensor]] = {}

    def step(side: str) -> None:
        use(sides[side])
        features.grad = None
        loss = loss_fn(features, labels)
        loss.backward()
        results[side] = (float(loss.detach()), features.grad)

    for side in sides:  # warm-up, and the values to compare
        step(side)
    loss_rel = abs(results["new"][0] - results["base"][0]) / abs(results["base"][0])
    grad_rel = float((results["new"][1] - results["base"][1]).norm() / results["base"][1].norm())
    times: dict[str, list[float]] = {"base": [], "new": [], "floor": []}
    for pair in range(pairs):
        order = ("base", "new") if pair % 2 == 0 else ("new", "base")
        for side in order:
            times[side].append(timed(lambda side=side: step(side)))
        times["floor"].append(timed(lambda: floor_pass(anchors, contrast)))
    use(similarity_logsumexp)
    ratio = [n / b for n, b in zip(times["new"], times["base"])]
    return {
        "loss": name,
        "N": num_samples,
        "D": dim,
        "base": statistics.median(times["base"]),
        "new": statistics.median(times["new"]),
        "floor": statistics.median(times["floor"]),
        "new/base": statistics.median(ratio),
        "base/floor": statistics.median(b / f for b, f in zip(times["base"], times["floor"])),
        "new/floor": statistics.median(n / f for n, f in zip(times["new"], times["floor"])),
        "agreement": f"loss rel {loss_rel:.1e}, grad rel {grad_rel:.1e}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision whose logsumexp.py is the baseline")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192], help="batch sizes N (V = 2)")
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 768], help="embedding sizes D")
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES))
    parser.add_argument("--pairs", type=int, default=5, help="timed (base, new) pairs per cell")
    args = parser.parse_args(argv)
    base = load_base(args.base)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Base: scpt/losses/logsumexp.py @ {args.base}; new: the working tree's. {cpu_model()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); load average at "
        f"start {load}. V={VIEWS}, tau={TEMPERATURE}, {NUM_CLASSES} classes, fp32; medians of {args.pairs} pairs.\n"
    )
    columns = ["loss", "N", "D", "base (s)", "new (s)", "floor (s)", "new/base", "base/floor", "new/floor", "agreement"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for num_samples in args.sizes:
        for dim in args.dims:
            for name in args.losses:
                row = compare(name, num_samples, dim, base, args.pairs)
                cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
                print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nload average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
