#!/usr/bin/env python
"""Time and memory of SupCon-style losses: scpt against pytorch-metric-learning, a dense reference and a floor.

For every batch size N, embedding size D (V = 2 views, tau = 0.07, labels from 10 classes drawn
with a fixed seed, so every anchor has at least its other view as a positive) one forward + backward
of each method is measured:

    scpt       scpt.losses.SupConLoss()                  SupCon L_out (docs/design.md §2)
    scpt-dscl  scpt.losses.DSCLLoss(alpha=0.1)           a different loss; timed for comparison
    scpt-in    scpt.losses.SupConLoss(variant="in")      SupCon L_in
    pml        pytorch_metric_learning SupConLoss        L_out on the flat [N*V, D] normalised embeddings
    dense      :func:`dense_supcon_out`                  textbook L_out on full (VN)x(VN) float matrices
    floor      :func:`floor_pass`                        3 matmuls + 2 exps over [VN, VN], no autograd

Every (method, N, D) runs in a fresh subprocess (this script with the hidden ``--worker`` flag):
it builds the inputs, takes ``ru_maxrss`` as the baseline, runs one forward + backward (the memory
pass, which is also the warm-up), takes ``ru_maxrss`` again, then times ``--repeats`` passes and
prints one JSON line. The parent never imports torch: a child started by fork + exec inherits the
parent's peak RSS as its own ``ru_maxrss`` starting value, so a heavy parent would hide the child's
peak. Before a worker is started its peak is estimated from the same method's delta at the
previous N, scaled by (N / N_prev)^2; above ``--max-gib`` the cell is skipped.

Usage:
    python experiments/benchmarks/losses.py                               # full default grid
    python experiments/benchmarks/losses.py --sizes 256 1024 --dims 128 --repeats 1
    python experiments/benchmarks/losses.py --methods scpt pml --out results.md [--force]
    python experiments/benchmarks/losses.py --out results.md --out records/losses.csv   # table + measurements

``--out`` may be given several times; the suffix picks the format: ``.csv`` or ``.json`` write the
measurements (one row per cell, the machine header as ``#`` lines / a ``header`` list; the format of
``records/losses.csv``, read by ``scpt figures``), anything else the markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported only inside the worker process
    from torch import Tensor

METHODS: tuple[str, ...] = ("scpt", "scpt-dscl", "scpt-in", "pml", "dense", "floor")
LOSS_METHODS: frozenset[str] = frozenset(METHODS) - {"floor"}
TEMPERATURE = 0.07
VIEWS = 2
NUM_CLASSES = 10
DSCL_ALPHA = 0.1
GRAD_ROWS = 16  # rows of the [N*V, D] gradient sent back to compare methods
HEADLINE = (4096, 128)  # (N, D) of the summary line
RESULT_MARKER = "@@benchmark-result@@ "
GIB = 2**30
KIB_PER_GIB = 2**20  # ru_maxrss is in KiB on Linux


# --------------------------------------------------------------------------------------------------
# Worker side: the losses under test (torch is imported here, never in the parent)
# --------------------------------------------------------------------------------------------------


def make_inputs(num_samples: int, dim: int, seed: int, requires_grad: bool) -> tuple[Tensor, Tensor]:
    """Seeded features ``[N, V, D]`` (a leaf) and labels ``[N]`` from :data:`NUM_CLASSES` classes.

    Every worker with the same (N, D, seed) gets bit-identical inputs, so loss values and gradients
    of different methods can be compared across processes.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (num_samples,), generator=generator)  # [N]
    features = torch.randn(num_samples, VIEWS, dim, generator=generator)  # [N, V, D]
    return features.requires_grad_(requires_grad), labels


def dense_supcon_out(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """SupCon L_out the way most papers' reference code computes it: everything as full float matrices.

    Args:
        features: ``[N, V, D]`` raw embeddings (normalised here).
        labels: ``[N]`` integer classes.
        temperature: tau.
    """
    import torch
    import torch.nn.functional as F

    num_samples, num_views, dim = features.shape
    z = F.normalize(features, dim=-1).reshape(num_samples * num_views, dim)  # [VN, D]
    view_labels = labels.repeat_interleave(num_views)  # [VN]
    logits = z @ z.T / temperature  # [VN, VN]
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()  # [VN, VN], stabilised
    not_self = 1.0 - torch.eye(logits.shape[0], dtype=logits.dtype, device=logits.device)  # [VN, VN], 0 on diagonal
    positive = (view_labels[:, None] == view_labels[None, :]).to(logits.dtype) * not_self  # [VN, VN]
    denominator = (logits.exp() * not_self).sum(dim=1, keepdim=True)  # [VN, 1], sum over A(a)
    log_prob = logits - denominator.log()  # [VN, VN], log p_ab
    mean_log_prob_positive = (positive * log_prob).sum(dim=1) / positive.sum(dim=1)  # [VN]
    return -mean_log_prob_positive.mean()


def floor_pass(anchors: Tensor, contrast: Tensor) -> None:
    """The work no exact method can avoid: forward logits, two exp passes, the two backward products.

    Args:
        anchors: ``[VN, D]`` normalised embeddings divided by tau.
        contrast: ``[VN, D]`` normalised embeddings.
    """
    logits = anchors @ contrast.T  # [VN, VN]  forward logits A @ C^T
    logits.exp()  # [VN, VN]  forward exp (the log-sum-exp)
    grad_logits = logits.exp_()  # [VN, VN]  backward exp (softmax), in place as a fused kernel would
    grad_logits @ contrast  # [VN, D]   G @ C    (gradient w.r.t. the anchors)
    grad_logits.T @ anchors  # [VN, D]   G^T @ A  (gradient w.r.t. the contrast set)


def loss_function(method: str, chunk_size: int | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """``features [N, V, D], labels [N] -> scalar loss`` for one of :data:`LOSS_METHODS`.

    ``chunk_size`` goes to the scpt losses (``None``: their automatic dense/chunked choice).
    """
    import torch.nn.functional as F

    from scpt.losses import DSCLLoss, SupConLoss

    if method == "scpt":
        return SupConLoss(temperature=TEMPERATURE, chunk_size=chunk_size)
    if method == "scpt-in":
        return SupConLoss(temperature=TEMPERATURE, variant="in", chunk_size=chunk_size)
    if method == "scpt-dscl":
        return DSCLLoss(temperature=TEMPERATURE, alpha=DSCL_ALPHA, chunk_size=chunk_size)
    if method == "dense":
        return lambda features, labels: dense_supcon_out(features, labels, TEMPERATURE)
    if method == "pml":
        from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss

        pml_loss = PMLSupConLoss(temperature=TEMPERATURE)

        def pml_step(features: Tensor, labels: Tensor) -> Tensor:
            flat = F.normalize(features, dim=-1).reshape(-1, features.shape[-1])  # [VN, D], sample-major
            return pml_loss(flat, labels.repeat_interleave(features.shape[1]))  # labels [VN]

        return pml_step
    raise ValueError(f"unknown loss method {method!r}")


def build_step(
    method: str, num_samples: int, dim: int, seed: int, chunk_size: int | None = None
) -> tuple[Callable[[], float | None], Callable[[], Any]]:
    """Inputs and a closure running one forward + backward; also a getter for the inputs' gradient.

    The closure returns the loss value (``None`` for the floor, which has no loss).
    """
    import torch.nn.functional as F

    if method == "floor":
        features, _ = make_inputs(num_samples, dim, seed, requires_grad=False)
        contrast = F.normalize(features, dim=-1).reshape(num_samples * VIEWS, dim)  # [VN, D]
        anchors = contrast / TEMPERATURE  # [VN, D]
        return (lambda: floor_pass(anchors, contrast)), (lambda: None)

    features, labels = make_inputs(num_samples, dim, seed, requires_grad=True)
    loss_fn = loss_function(method, chunk_size)

    def step() -> float:
        features.grad = None
        loss = loss_fn(features, labels)
        loss.backward()
        return float(loss.item())

    return step, (lambda: features.grad)


def peak_rss_kib() -> int:
    """Peak resident set size of this process so far (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_worker(
    method: str, num_samples: int, dim: int, repeats: int, seed: int, chunk_size: int | None = None
) -> dict[str, Any]:
    """Memory pass (also the warm-up), then ``repeats`` timed passes; returns a JSON-able result."""
    import psutil
    import torch

    step, gradient = build_step(method, num_samples, dim, seed, chunk_size)
    torch.ones(64, 64).matmul(torch.ones(64, 64)).exp_()  # start torch's thread pool outside the measurement
    current_rss = psutil.Process().memory_info().rss
    baseline = peak_rss_kib()
    loss = step()
    peak = peak_rss_kib()
    grad = gradient()
    grad_head = None if grad is None else grad.reshape(-1, dim)[:GRAD_ROWS].double().tolist()
    grad = None  # drop the reference before timing

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {
        "loss": loss,
        "grad_head": grad_head,
        "rss_gib": (peak - baseline) / KIB_PER_GIB,
        # how far the baseline peak already was above the current RSS; a large value means the
        # delta may be understated (the pass reused headroom that an earlier peak had reached)
        "baseline_slack_gib": max(0.0, (baseline * 1024 - current_rss) / GIB),
        "times": times,
    }


def worker_info() -> dict[str, Any]:
    """Versions and thread count as seen by a worker process (the parent does not import torch)."""
    import pytorch_metric_learning
    import torch

    import scpt

    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "pml": pytorch_metric_learning.__version__,
        "scpt": getattr(scpt, "__version__", "?"),
    }


def error_summary(error: BaseException) -> str:
    """A one-line reason for the table; torch's allocator failures are cut down to their point."""
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else ""
    if "DefaultCPUAllocator" in message:
        message = "out of memory: " + message[message.index("DefaultCPUAllocator") :]
    return f"{type(error).__name__}: {message}"[:200].rstrip(": ")


def worker_main(args: argparse.Namespace) -> int:
    """Entry point of ``--worker``: print one result line (or an error line) on stdout."""
    try:
        if args.worker == "info":
            result: dict[str, Any] = worker_info()
        else:
            result = run_worker(args.worker, args.n, args.d, args.repeats, args.seed, args.scpt_chunk_size)
        status = 0
    except BaseException as error:  # MemoryError, allocator RuntimeError, ...: report, do not crash
        result = {"error": error_summary(error)}
        status = 1
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return status


# --------------------------------------------------------------------------------------------------
# Parent side: the grid, skipping, the table (no torch here)
# --------------------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One (method, N, D) measurement or the reason there is none."""

    method: str
    n: int
    d: int
    status: str = "ok"  # "ok", "skipped" or "failed"
    note: str = ""
    times: list[float] = field(default_factory=list)
    rss_gib: float | None = None
    baseline_slack_gib: float = 0.0
    loss: float | None = None
    grad_head: list[list[float]] | None = None

    @property
    def time(self) -> float | None:
        """Median wall time of the timed passes."""
        return statistics.median(self.times) if self.times else None


def parse_worker_output(stdout: str) -> dict[str, Any] | None:
    """The JSON result line of a worker, or ``None`` if it printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    return None


def death_reason(returncode: int, stderr: str) -> str:
    """Why a worker ended without a result: the signal that killed it or its last stderr line."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else f"exit status {returncode}"


def run_subprocess(worker_args: Sequence[str], timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    """Run this script as a worker; returns ``(result or None, failure reason)``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", *worker_args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, f"timeout after {timeout_s:.0f} s"
    result = parse_worker_output(done.stdout)
    if result is None:
        return None, death_reason(done.returncode, done.stderr)
    if "error" in result:
        return None, result["error"]
    return result, ""


def measure(method: str, n: int, d: int, args: argparse.Namespace) -> Cell:
    """One fresh worker for (method, N, D)."""
    worker_args = [method, "--n", str(n), "--d", str(d), "--repeats", str(args.repeats), "--seed", str(args.seed)]
    if args.scpt_chunk_size is not None:
        worker_args += ["--scpt-chunk-size", str(args.scpt_chunk_size)]
    result, reason = run_subprocess(worker_args, args.timeout)
    if result is None:
        return Cell(method, n, d, status="failed", note=f"failed: {reason}")
    return Cell(
        method,
        n,
        d,
        times=result["times"],
        rss_gib=result["rss_gib"],
        baseline_slack_gib=result["baseline_slack_gib"],
        loss=result["loss"],
        grad_head=result["grad_head"],
    )


def estimate_gib(previous: tuple[int, float] | None, n: int) -> float | None:
    """Peak RSS increase at N scaled quadratically from ``(N_prev, GiB at N_prev)``; None if unknown."""
    if previous is None:
        return None
    n_prev, gib_prev = previous
    return max(gib_prev, 0.0) * (n / n_prev) ** 2


def looks_like_memory(reason: str) -> bool:
    """Whether a failure reason reads like running out of memory or time (larger N cannot do better)."""
    markers = ("SIGKILL", "MemoryError", "allocate memory", "out of memory", "timeout")
    return any(marker in reason for marker in markers)


def run_grid(args: argparse.Namespace) -> list[Cell]:
    """All cells, ascending N (so each method's previous size is known), then D, then method."""
    previous: dict[tuple[str, int], tuple[int, float] | None] = {}
    smaller_failed: set[tuple[str, int]] = set()
    cells: list[Cell] = []
    grid = [(n, d, m) for n in sorted(args.sizes) for d in args.dims for m in args.methods]
    for index, (n, d, method) in enumerate(grid, start=1):
        key = (method, d)
        estimate = estimate_gib(previous.get(key), n)
        if key in smaller_failed:
            cell = Cell(method, n, d, status="skipped", note="skipped (a smaller N ran out of memory or time)")
        elif estimate is not None and estimate > args.max_gib:
            cell = Cell(method, n, d, status="skipped", note=f"skipped (est. {estimate:.3g} GiB)")
            previous[key] = (n, estimate)
        else:
            cell = measure(method, n, d, args)
            if cell.status == "failed" and looks_like_memory(cell.note):
                smaller_failed.add(key)  # a larger N would only fail the same way, after longer
            else:
                previous[key] = (n, cell.rss_gib or 0.0)
        cells.append(cell)
        print(f"[{index}/{len(grid)}] {progress_line(cell)}", file=sys.stderr, flush=True)
    return cells


def progress_line(cell: Cell) -> str:
    """One line of progress on stderr."""
    head = f"{cell.method:<9} N={cell.n:<5} D={cell.d:<4}"
    if cell.status != "ok":
        return f"{head} {cell.note}"
    return f"{head} {cell.time:.4g} s  +{cell.rss_gib:.3f} GiB"


def relative_difference(value: float, reference: float) -> float:
    """|value - reference| / |reference| (inf if the reference is 0 and the value is not)."""
    if reference == 0.0:
        return 0.0 if value == 0.0 else math.inf
    return abs(value - reference) / abs(reference)


def gradient_difference(grad: list[list[float]], reference: list[list[float]]) -> float:
    """Relative Frobenius distance of two gradient slices."""
    diff = math.sqrt(sum((a - b) ** 2 for row, ref in zip(grad, reference) for a, b in zip(row, ref)))
    norm = math.sqrt(sum(b * b for ref in reference for b in ref))
    return diff / norm if norm else (0.0 if diff == 0.0 else math.inf)


def loss_reference(cell: Cell, cells: Sequence[Cell]) -> Cell | None:
    """The L_out cell to compare ``cell`` with: scpt at the same size, else dense, else pml (if it ran)."""
    for method in ("scpt", "dense", "pml"):
        reference = find(cells, method, cell.n, cell.d)
        if method != cell.method and reference is not None and reference.status == "ok" and reference.loss is not None:
            return reference
    return None


def agreement(cell: Cell, cells: Sequence[Cell], rtol: float) -> str:
    """The loss-agreement column: L_out methods against scpt (or dense/pml if scpt did not run), L_in <= L_out."""
    if cell.status != "ok" or cell.loss is None:
        return "n/a"
    if cell.method == "scpt-dscl":
        return f"n/a (other loss), L={cell.loss:.5f}"
    if cell.method == "scpt":
        return f"reference, L={cell.loss:.5f}"
    reference = loss_reference(cell, cells)
    if reference is None:
        return f"no L_out reference, L={cell.loss:.5f}"
    against = "" if reference.method == "scpt" else f" vs {reference.method}"
    if cell.method == "scpt-in":
        ok = cell.loss <= reference.loss * (1 + rtol)
        return f"{'' if ok else 'WARNING: '}L_in={cell.loss:.5f} {'<=' if ok else '>'} L_out{against}"
    loss_rel = relative_difference(cell.loss, reference.loss)
    grad_rel = gradient_difference(cell.grad_head or [], reference.grad_head or [])
    warn = "WARNING: " if loss_rel > rtol or grad_rel > rtol else ""
    return f"{warn}loss rel {loss_rel:.1e}, grad rel {grad_rel:.1e}{against}"


def ratio(value: float | None, reference: float | None) -> str:
    """``value / reference`` to two decimals, or n/a."""
    if value is None or reference is None or reference <= 0:
        return "n/a"
    return f"{value / reference:.2f}"


def find(cells: Sequence[Cell], method: str, n: int, d: int) -> Cell | None:
    """The cell of (method, N, D), if it was in the grid."""
    return next((c for c in cells if (c.method, c.n, c.d) == (method, n, d)), None)


def ok_time(cell: Cell | None) -> float | None:
    """The cell's time if it was measured, else ``None``."""
    return cell.time if cell is not None and cell.status == "ok" else None


def ok_rss(cell: Cell | None) -> float | None:
    """The cell's rss_gib if it was measured, else ``None``."""
    return cell.rss_gib if cell is not None and cell.status == "ok" else None


def shorten(text: str, limit: int = 90) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis) and made safe for a markdown cell."""
    text = text.replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def table_row(cell: Cell, cells: Sequence[Cell], rtol: float) -> str:
    """One markdown row."""
    scpt, floor = find(cells, "scpt", cell.n, cell.d), find(cells, "floor", cell.n, cell.d)
    head = [str(cell.n), str(cell.d), str(VIEWS * cell.n), cell.method]
    if cell.status != "ok":
        return "| " + " | ".join(head + [shorten(cell.note), "—", "—", "—", "—", "—"]) + " |"
    slack = cell.baseline_slack_gib
    rss = f"{cell.rss_gib:.3f}" + (f" (slack {slack:.2f})" if slack > 0.0625 else "")  # see run_worker
    rss_ratio = "n/a (floor)" if cell.method == "floor" else ratio(cell.rss_gib, ok_rss(scpt))
    values = [
        f"{cell.time:.4g}",
        ratio(cell.time, ok_time(scpt)),
        ratio(cell.time, ok_time(floor)),
        rss,
        rss_ratio,
        "n/a (no loss)" if cell.method == "floor" else agreement(cell, cells, rtol),
    ]
    return "| " + " | ".join(head + values) + " |"


def format_table(cells: Sequence[Cell], rtol: float) -> list[str]:
    """The markdown table."""
    columns = ["N", "D", "VN", "method", "time (s)", "time / scpt", "time / floor"]
    columns += ["peak RSS +GiB", "RSS / scpt", "loss agreement"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return lines + [table_row(cell, cells, rtol) for cell in cells]


def headline_size(cells: Sequence[Cell]) -> tuple[int, int]:
    """:data:`HEADLINE` if it was run with scpt, else the largest N (smallest D) where scpt ran."""
    if ok_time(find(cells, "scpt", *HEADLINE)) is not None:
        return HEADLINE
    measured = [(c.n, -c.d) for c in cells if c.method == "scpt" and c.status == "ok"]
    if not measured:
        return HEADLINE
    n, minus_d = max(measured)
    return n, -minus_d


def speed_phrase(scpt_time: float, cell: Cell | None, name: str) -> str:
    """'X.Xx faster than NAME' (or slower), or why there is no number."""
    other = ok_time(cell)
    if other is None:
        return f"no {name} time ({cell.note if cell is not None else 'not run'})"
    if other >= scpt_time:
        return f"{other / scpt_time:.1f}x faster than {name}"
    return f"{scpt_time / other:.1f}x slower than {name}"


def summary_line(cells: Sequence[Cell]) -> str:
    """The one-line headline comparison at N=4096, D=128 (or the closest size that was run)."""
    n, d = headline_size(cells)
    prefix = f"Headline N={n}, D={d}" + ("" if (n, d) == HEADLINE else f" (N={HEADLINE[0]}, D={HEADLINE[1]} not run)")
    scpt = find(cells, "scpt", n, d)
    scpt_time = ok_time(scpt)
    if scpt_time is None:
        return f"{prefix}: no scpt measurement (scpt failed, was skipped or was not selected)."
    pml, dense, floor = (find(cells, m, n, d) for m in ("pml", "dense", "floor"))
    floor_time = ok_time(floor)
    floor_text = f"{scpt_time / floor_time:.1f}x the floor" if floor_time else "no floor time"
    pml_rss = ok_rss(pml)
    pml_text = f"pml +{pml_rss:.2f} GiB" if pml_rss is not None else "pml n/a"
    return (
        f"{prefix}: scpt is {speed_phrase(scpt_time, pml, 'pml')}, {speed_phrase(scpt_time, dense, 'dense')}, "
        f"{floor_text}; +{scpt.rss_gib:.2f} GiB vs {pml_text}"
    )


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_revision() -> str:
    """Short commit of the repository holding this script, with '+dirty' if it has changes."""
    root = Path(__file__).resolve().parent
    git = ["git", "-C", str(root)]
    try:
        rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "scpt"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if rev.returncode == 0 else "unknown"


def machine_header(args: argparse.Namespace) -> list[str]:
    """Lines describing the machine and the run."""
    import psutil

    info, reason = run_subprocess(["info"], args.timeout)
    info = info or {"torch": f"? ({reason})", "threads": "?", "pml": "?", "scpt": "?"}
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"Machine: {cpu_model()}, {psutil.cpu_count(logical=False)} physical / {os.cpu_count()} logical cores, "
        f"{psutil.virtual_memory().total / GIB:.1f} GiB RAM; Python {platform.python_version()}, torch {info['torch']} "
        f"({info['threads']} threads, default), pytorch-metric-learning {info['pml']}, scpt {info['scpt']} "
        f"@ {git_revision()}; load average at start {load}.",
        f"Setup: V={VIEWS}, tau={TEMPERATURE}, {NUM_CLASSES} classes (seed {args.seed}), fp32; time = median of "
        f"{args.repeats} forward+backward passes after one warm-up pass (the memory pass); peak RSS +GiB = "
        f"ru_maxrss increase over one pass in a fresh process; cells estimated above {args.max_gib:g} GiB are skipped"
        + (f"; scpt losses with chunk_size={args.scpt_chunk_size}." if args.scpt_chunk_size else "."),
    ]


#: Columns of the measurement records (``--out FILE.csv``), the format ``scpt figures`` reads.
RECORD_COLUMNS = ("record", "n", "d", "vn", "method", "status", "time_s", "rss_gib", "note")


def record_rows(cells: Sequence[Cell], record: str) -> list[dict[str, Any]]:
    """One dict per cell: ``record`` (the run's date), N, D, VN, method, status, median time (s), peak RSS
    increase (GiB), and the reason a cell was skipped or failed; unmeasured values are ``None``."""
    return [
        {
            "record": record,
            "n": cell.n,
            "d": cell.d,
            "vn": VIEWS * cell.n,
            "method": cell.method,
            "status": cell.status,
            "time_s": cell.time if cell.status == "ok" else None,
            "rss_gib": cell.rss_gib if cell.status == "ok" else None,
            "note": cell.note,
        }
        for cell in cells
    ]


def records_csv(cells: Sequence[Cell], header: Sequence[str], record: str) -> str:
    """The measurements as CSV: the machine header as ``#`` lines, then one row per cell."""
    import csv
    import io

    buffer = io.StringIO()
    buffer.writelines(f"# {line}\n" for line in header)
    writer = csv.DictWriter(buffer, fieldnames=RECORD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in record_rows(cells, record):
        writer.writerow(
            {
                key: "" if value is None else f"{value:.4g}" if isinstance(value, float) else value
                for key, value in row.items()
            }
        )
    return buffer.getvalue()


def write_atomic(path: Path, text: str, force: bool) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (``--worker`` and its companions are internal)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096, 8192], help="batch sizes N")
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 768], help="embedding sizes D")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per cell (median)")
    parser.add_argument(
        "--max-gib", type=float, default=8.0, help="skip cells whose estimated peak RSS increase exceeds this"
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run")
    parser.add_argument(
        "--out",
        type=Path,
        action="append",
        default=[],
        help="also write to this file (atomically; repeatable): .csv/.json the measurements, else the markdown",
    )
    parser.add_argument("--force", action="store_true", help="let --out overwrite an existing file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs and labels")
    parser.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance of the loss/gradient agreement")
    parser.add_argument(
        "--scpt-chunk-size", type=int, help="chunk_size for the scpt losses (default: scpt's automatic choice)"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a worker is killed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--d", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.sizes) < 1 or min(args.dims) < 1:
        parser.error("--repeats, --sizes and --dims must be >= 1")
    if args.scpt_chunk_size is not None and args.scpt_chunk_size < 1:
        parser.error("--scpt-chunk-size must be >= 1")
    args.methods = [m for m in METHODS if m in args.methods]  # canonical order, no duplicates
    args.dims = list(dict.fromkeys(args.dims))
    args.sizes = sorted(set(args.sizes))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the grid, print the markdown, optionally write it to ``--out``."""
    args = parse_args(argv)
    if args.worker is not None:
        return worker_main(args)
    for out in args.out:
        if out.exists() and not args.force:
            print(f"error: {out} exists; pass --force to overwrite it", file=sys.stderr)
            return 2
    header = machine_header(args)
    record = time.strftime("%Y-%m-%d")
    cells = run_grid(args)
    text = "\n".join([*header, "", *format_table(cells, args.rtol), "", summary_line(cells)]) + "\n"
    print(text, end="")
    for out in args.out:
        suffix = out.suffix.lower()
        if suffix == ".csv":
            written = records_csv(cells, header, record)
        elif suffix == ".json":
            written = json.dumps({"header": header, "rows": record_rows(cells, record)}, indent=1) + "\n"
        else:
            written = text
        write_atomic(out, written, args.force)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
