#!/usr/bin/env python
"""GPU check of scpt's loss path: exactness against the float64 references, then the timing table.

Run from the repository root on a CUDA machine (``experiments/benchmarks/gpu_check.sh`` does this and
prints the GPU first); it needs only torch, and times pytorch-metric-learning when that is importable:

    python experiments/benchmarks/gpu_check.py                  # CUDA, full table; < 5 min on an H200
    python experiments/benchmarks/gpu_check.py --cpu --small    # the same checks on the CPU, small sizes

(a) **Exactness.** Small cases (N = 12, V = 2, D = 8) of SupCon L_out and L_in, DSCL and SimCSE with
hard negatives, on the device in float64 and float32, dense path and chunked path, against the
plain-Python float64 references of ``tests/reference.py`` (loss) and the CPU float64 torch path
(gradient); SupCon L_in with a memory queue, and the log-sum-exp with per-anchor incoming gradients
(backward's recompute branch), against the CPU float64 torch path. Then a mid-size case (VN = 8192,
D = 128; ``--small``: VN = 2200, D = 32) of every loss with the device's automatic chunk choice
(and SupCon L_in also in float64 with ragged chunks) against the CPU float64 torch path.

(b) **Table.** SupCon L_out, V = 2, 100 classes, fp32, forward + backward: scpt (the automatic
choice), scpt with the chunk rule it had before the device-aware choice (``CHUNK_LOGITS // VN`` rows),
the dense textbook formulation (``losses.py``'s :func:`dense_supcon_out`), pytorch-metric-learning,
and the floor (the three matrix products and two exp passes over [VN, VN] in 8192-row chunks, no
autograd). Time = median of ``--repeats`` passes after a warm-up; peak memory = the allocator's peak
above what was allocated before the warm-up pass (CUDA only). Cells a peer cannot fit are skipped on
an estimate (bytes per logit measured on an H200) and an out-of-memory error is reported, not fatal.

Exit status: 0 if every exactness check passed, 1 if one failed, 2 if there is no CUDA device
(without ``--cpu``). The performance bar (scpt <= dense where dense ran, scpt <= 2x the floor for
VN >= 32768) is printed, not enforced.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from losses import dense_supcon_out  # noqa: E402  experiments/benchmarks/losses.py

import reference as ref  # noqa: E402  tests/reference.py: plain-Python float64 losses
from scpt.losses import DSCLLoss, SimCSELoss, SupConLoss, logsumexp  # noqa: E402
from scpt.losses.logsumexp import CHUNK_LOGITS, ColumnOffset, similarity_logsumexp  # noqa: E402

GIB = 2**30
TEMPERATURE = 0.07
VIEWS = 2
NUM_CLASSES = 100
FLOOR_CHUNK_ROWS = 8192
#: Peak bytes per [VN, VN] logit of the peers (H200, fp32: dense 84 GiB and pml 45 GiB at VN = 65536
#: and 32768): a cell estimated above the device's memory is skipped instead of run into an OOM.
PEER_BYTES_PER_LOGIT = {"dense": 21.0, "pml": 45.0}


# --------------------------------------------------------------------------------------------------
# (a) exactness


@dataclass
class Check:
    """One exactness comparison."""

    name: str
    loss_error: float
    grad_error: float
    loss_tol: float
    grad_tol: float

    @property
    def ok(self) -> bool:
        return self.loss_error <= self.loss_tol and self.grad_error <= self.grad_tol

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAIL"
        return (
            f"| {self.name} | {self.loss_error:.1e} (tol {self.loss_tol:.0e}) | "
            f"{self.grad_error:.1e} (tol {self.grad_tol:.0e}) | {verdict} |"
        )


def relative_error(value: Tensor | float | None, reference: Tensor | float | None) -> float:
    """``||value - reference|| / ||reference||`` in float64 on the CPU (absolute if the reference is 0);
    0 if both are ``None`` (an input that gets no gradient, such as a memory queue), inf if one is."""
    if value is None or reference is None:
        return 0.0 if value is None and reference is None else math.inf
    value = torch.as_tensor(value, dtype=torch.float64).detach().cpu()  # a Python float stays float64
    reference = torch.as_tensor(reference, dtype=torch.float64).detach().cpu()
    norm = float(torch.linalg.vector_norm(reference))
    diff = float(torch.linalg.vector_norm(value - reference))
    return diff / norm if norm > 0 else diff


def loss_and_grads(
    call: Callable[..., Tensor], inputs: Sequence[Tensor], device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, list[Tensor]]:
    """``call(*leaves)`` and the leaves' gradients, with the inputs moved to ``device``/``dtype``."""
    leaves = [x.detach().to(device=device, dtype=dtype).requires_grad_() for x in inputs]
    loss = call(*leaves)
    loss.backward()
    return loss.detach(), [leaf.grad for leaf in leaves]


@dataclass
class Case:
    """A loss, its inputs and its float64 reference value (``None``: the CPU float64 torch path only)."""

    name: str
    make: Callable[[int | None], Callable[..., Tensor]]  # chunk_size -> call(*inputs)
    inputs: list[Tensor]
    reference: float | None


def small_cases(seed: int = 0) -> list[Case]:
    """N = 12, V = 2, D = 8 (4 classes): the four losses with tests/reference.py values."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(12, VIEWS, 8, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (12,), generator=g)
    z1, z2, z3 = (torch.randn(12, 8, generator=g, dtype=torch.float64) for _ in range(3))
    memory = torch.randn(10, 8, generator=g, dtype=torch.float64)
    memory_labels = torch.randint(0, 4, (10,), generator=g)

    def with_labels(make_loss: Callable[[int | None], Callable[..., Tensor]]) -> Callable[..., Callable[..., Tensor]]:
        return lambda c: lambda f: make_loss(c)(f, labels.to(f.device))

    def supcon_queue(c: int | None) -> Callable[..., Tensor]:
        loss = SupConLoss(0.1, variant="in", chunk_size=c)
        return lambda f, m: loss(f, labels.to(f.device), memory=m, memory_labels=memory_labels.to(f.device))

    def simcse(c: int | None) -> Callable[..., Tensor]:
        loss = SimCSELoss(0.05, hard_negative_weight=0.5, chunk_size=c)
        return lambda a, b, h: loss(torch.stack([a, b], dim=1), hard_negatives=h)

    return [
        Case(
            "SupCon L_out",
            with_labels(lambda c: SupConLoss(0.1, chunk_size=c)),
            [features],
            ref.supcon_batch(features, labels, temperature=0.1, variant="out"),
        ),
        Case(
            "SupCon L_in",
            with_labels(lambda c: SupConLoss(0.1, variant="in", chunk_size=c)),
            [features],
            ref.supcon_batch(features, labels, temperature=0.1, variant="in"),
        ),
        Case(
            "DSCL alpha 0.2",
            with_labels(lambda c: DSCLLoss(0.1, alpha=0.2, chunk_size=c)),
            [features],
            ref.dscl_batch(features, labels, temperature=0.1, alpha=0.2),
        ),
        Case(
            "SimCSE hard negatives w 0.5",
            simcse,
            [z1, z2, z3],
            ref.simcse_batch(z1, z2, z3, temperature=0.05, hard_negative_weight=0.5),
        ),
        Case("SupCon L_in + queue", supcon_queue, [features, memory], None),
    ]


def check_case(case: Case, device: torch.device, dtype: torch.dtype, chunk: int | None, label: str) -> Check:
    """Loss against the float64 reference (or the CPU path), gradient against the CPU float64 torch path."""
    loss, grads = loss_and_grads(case.make(chunk), case.inputs, device, dtype)
    cpu_loss, cpu_grads = loss_and_grads(case.make(None), case.inputs, torch.device("cpu"), torch.float64)
    reference = case.reference if case.reference is not None else float(cpu_loss)
    grad_error = max(relative_error(g, c) for g, c in zip(grads, cpu_grads))
    exact = dtype == torch.float64
    return Check(
        f"{case.name}, {label}",
        relative_error(loss, reference),
        grad_error,
        1e-10 if exact else 1e-5,
        1e-9 if exact else 1e-4,
    )


def per_anchor_gradient_check(device: torch.device, paired: bool) -> Check:
    """similarity_logsumexp with both offset kinds, a positive block and incoming gradients that differ per
    anchor, float64, chunks of 7 rows vs the CPU dense path. ``paired``: g_pos = -g_all (the anchors'
    gradient comes from the products formed in forward, the contrast set's is recomputed); else
    unrelated g_all and g_pos (backward recomputes both)."""
    g = torch.Generator().manual_seed(3)
    anchors = torch.randn(23, 6, generator=g, dtype=torch.float64)
    contrast = torch.randn(31, 6, generator=g, dtype=torch.float64)
    own = torch.arange(23)
    own[::5] = -1
    weighted = (own + 3) % 31
    labels_a, labels_c = torch.arange(23) % 4, torch.arange(31) % 4
    grad_all, grad_pos = (torch.randn(23, generator=g, dtype=torch.float64) for _ in range(2))
    grad_pos = -grad_all if paired else grad_pos

    def run(dev: torch.device, chunk: int | None) -> tuple[Tensor, list[Tensor]]:
        offsets = [ColumnOffset(own.to(dev), float("-inf")), ColumnOffset(weighted.to(dev), 0.4)]
        a_ids, c_ids = labels_a.to(dev), labels_c.to(dev)

        def call(a: Tensor, c: Tensor) -> Tensor:
            lse_all, lse_pos = similarity_logsumexp(
                a, c, offsets, positive_block=lambda s, e: a_ids[s:e, None] == c_ids[None, :], chunk_size=chunk
            )
            return (lse_all * grad_all.to(dev)).sum() + (lse_pos * grad_pos.to(dev)).sum()

        return loss_and_grads(call, [anchors, contrast], dev, torch.float64)

    (value, grads), (cpu_value, cpu_grads) = run(device, 7), run(torch.device("cpu"), None)
    grad_error = max(relative_error(a, b) for a, b in zip(grads, cpu_grads))
    name = f"lse with per-anchor gradients{', g_pos = -g_all' if paired else ''}, float64, chunk 7"
    return Check(name, relative_error(value, cpu_value), grad_error, 1e-10, 1e-9)


def mid_size_checks(device: torch.device, small: bool) -> list[Check]:
    """Every loss at VN = 8192 (small: 2200) on the device, automatic chunking, against the CPU float64 path."""
    num_samples, dim = (1100, 32) if small else (4096, 128)
    g = torch.Generator().manual_seed(4)
    features = torch.randn(num_samples, VIEWS, dim, generator=g, dtype=torch.float64)
    labels = torch.randint(0, NUM_CLASSES, (num_samples,), generator=g)
    z1, z2, z3 = (torch.randn(num_samples, dim, generator=g, dtype=torch.float64) for _ in range(3))

    def labelled(loss_fn: Callable[..., Tensor]) -> Callable[[Tensor], Tensor]:
        return lambda f: loss_fn(f, labels.to(f.device))

    simcse = SimCSELoss(0.05, hard_negative_weight=0.5)
    cases: list[tuple[str, Callable[..., Tensor], Callable[..., Tensor], list[Tensor], torch.dtype]] = [
        (
            "SupCon L_out",
            labelled(SupConLoss(TEMPERATURE)),
            labelled(SupConLoss(TEMPERATURE)),
            [features],
            torch.float32,
        ),
        (
            "SupCon L_in",
            labelled(SupConLoss(TEMPERATURE, variant="in")),
            labelled(SupConLoss(TEMPERATURE, variant="in")),
            [features],
            torch.float32,
        ),
        (
            "SupCon L_in, ragged chunks of 1000",
            labelled(SupConLoss(TEMPERATURE, variant="in", chunk_size=1000)),
            labelled(SupConLoss(TEMPERATURE, variant="in")),
            [features],
            torch.float64,
        ),
        ("DSCL", labelled(DSCLLoss(TEMPERATURE)), labelled(DSCLLoss(TEMPERATURE)), [features], torch.float32),
        (
            "SimCSE hard negatives",
            lambda a, b, h: simcse(torch.stack([a, b], dim=1), hard_negatives=h),
            lambda a, b, h: simcse(torch.stack([a, b], dim=1), hard_negatives=h),
            [z1, z2, z3],
            torch.float32,
        ),
    ]
    checks = []
    vn = num_samples * VIEWS
    for name, call, cpu_call, inputs, dtype in cases:
        loss, grads = loss_and_grads(call, inputs, device, dtype)
        cpu_loss, cpu_grads = loss_and_grads(cpu_call, inputs, torch.device("cpu"), torch.float64)
        grad_error = max(relative_error(a, b) for a, b in zip(grads, cpu_grads))
        exact = dtype == torch.float64
        checks.append(
            Check(
                f"{name}, VN {vn}, D {dim}, {str(dtype).removeprefix('torch.')}, auto vs CPU float64",
                relative_error(loss, cpu_loss),
                grad_error,
                1e-10 if exact else 1e-5,
                1e-9 if exact else 1e-4,
            )
        )
    return checks


def exactness(device: torch.device, small: bool) -> list[Check]:
    """Every check of section (a)."""
    checks = []
    for case in small_cases():
        for dtype in (torch.float64, torch.float32):
            for chunk, path in ((None, "dense path"), (5, "chunks of 5")):
                label = f"{str(dtype).removeprefix('torch.')}, {path}"
                checks.append(check_case(case, device, dtype, chunk, label))
    checks += [per_anchor_gradient_check(device, paired) for paired in (False, True)]
    return checks + mid_size_checks(device, small)


# --------------------------------------------------------------------------------------------------
# (b) the table


def floor_pass(anchors: Tensor, contrast: Tensor) -> None:
    """The work every exact method must do, in 8192-row chunks without autograd: the logits product, the
    forward exp, the backward exp, G @ C and G.T @ A.

    Args:
        anchors: ``[VN, D]`` normalised embeddings divided by tau.
        contrast: ``[VN, D]`` normalised embeddings.
    """
    grad_anchors = torch.empty_like(anchors)
    grad_contrast = torch.zeros_like(contrast)
    for start in range(0, anchors.shape[0], FLOOR_CHUNK_ROWS):
        chunk = anchors[start : start + FLOOR_CHUNK_ROWS]
        logits = chunk @ contrast.T  # [c, VN]
        logits.exp()  # forward exp (the log-sum-exp)
        weights = logits.exp_()  # backward exp (the softmax), in place as a fused kernel would
        torch.mm(weights, contrast, out=grad_anchors[start : start + chunk.shape[0]])
        grad_contrast.addmm_(weights.T, chunk)


def method_step(method: str, features: Tensor, labels: Tensor) -> Callable[[], None]:
    """One forward + backward of ``method`` on ``features`` [N, V, D] (a leaf) and ``labels`` [N]."""
    vn, dim = features.shape[0] * features.shape[1], features.shape[2]
    if method == "floor":
        contrast = F.normalize(features.detach(), dim=-1).reshape(vn, dim)
        anchors = contrast / TEMPERATURE
        return lambda: floor_pass(anchors, contrast)
    if method == "scpt":
        loss_fn: Callable[[Tensor, Tensor], Tensor] = SupConLoss(TEMPERATURE)
    elif method == "scpt-old-rule":
        loss_fn = SupConLoss(TEMPERATURE, chunk_size=max(1, CHUNK_LOGITS // vn))
    elif method == "dense":
        loss_fn = lambda f, y: dense_supcon_out(f, y, TEMPERATURE)  # noqa: E731
    elif method == "pml":
        from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss

        pml = PMLSupConLoss(temperature=TEMPERATURE)
        loss_fn = lambda f, y: pml(F.normalize(f, dim=-1).reshape(vn, dim), y.repeat_interleave(VIEWS))  # noqa: E731
    else:
        raise ValueError(f"unknown method {method!r}")

    def step() -> None:
        features.grad = None
        loss_fn(features, labels).backward()

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass
class Cell:
    """One (VN, D, method) measurement or why there is none."""

    vn: int
    dim: int
    method: str
    seconds: float | None = None
    peak_gib: float | None = None
    note: str = ""


def measure(method: str, vn: int, dim: int, device: torch.device, repeats: int) -> Cell:
    """Warm-up pass (peak memory on CUDA), then the median of ``repeats`` timed passes."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, NUM_CLASSES, (vn // VIEWS,), generator=g).to(device)
    features = torch.randn(vn // VIEWS, VIEWS, dim, generator=g).to(device).requires_grad_()
    step = method_step(method, features, labels)
    cell = Cell(vn, dim, method)
    try:
        release(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        if device.type == "cuda":
            cell.peak_gib = (torch.cuda.max_memory_allocated(device) - before) / GIB
        times = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times.append(time.perf_counter() - start)
        cell.seconds = statistics.median(times)
    except torch.cuda.OutOfMemoryError:
        cell.seconds, cell.note = None, "OOM"
    finally:
        del step, features, labels
        release(device)
    return cell


def device_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.get_device_properties(device).total_memory / GIB if device.type == "cuda" else None


def table(device: torch.device, small: bool, repeats: int, budget_s: float, started: float) -> list[Cell]:
    """Every cell of section (b), in order, skipping what cannot fit or what the time budget leaves out."""
    sizes = [(2048, 128), (4096, 128), (4096, 768)] if small else [(8192, 128), (32768, 128), (65536, 128)]
    sizes += [] if small else [(131072, 128), (32768, 768)]
    methods = ["scpt", "scpt-old-rule", "dense", "pml", "floor"]
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        methods.remove("pml")
        print("pytorch-metric-learning is not importable: its column is left out.", flush=True)
    total_gib = device_memory_gib(device)
    cells = []
    for vn, dim in sizes:
        for method in methods:
            estimate = PEER_BYTES_PER_LOGIT.get(method, 0.0) * vn * vn / GIB
            if time.perf_counter() - started > budget_s:
                cell = Cell(vn, dim, method, note=f"skipped (past the {budget_s:.0f} s budget)")
            elif total_gib is not None and estimate > 0.95 * total_gib:
                cell = Cell(vn, dim, method, note=f"skipped (est. {estimate:.0f} GiB > {total_gib:.0f} GiB)")
            else:
                cell = measure(method, vn, dim, device, repeats)
            cells.append(cell)
            print(f"  {progress(cell)}", flush=True)
    return cells


def progress(cell: Cell) -> str:
    head = f"VN={cell.vn:<6} D={cell.dim:<4} {cell.method:<13}"
    if cell.seconds is None:
        return f"{head} {cell.note}"
    memory = f"  {cell.peak_gib:.2f} GiB" if cell.peak_gib is not None else ""
    return f"{head} {cell.seconds * 1e3:.1f} ms{memory}"


def find(cells: Sequence[Cell], vn: int, dim: int, method: str) -> Cell | None:
    return next((c for c in cells if (c.vn, c.dim, c.method) == (vn, dim, method)), None)


def ratio(cell: Cell, other: Cell | None) -> str:
    if cell.seconds is None or other is None or other.seconds is None:
        return "—"
    return f"{cell.seconds / other.seconds:.2f}"


def format_table(cells: Sequence[Cell]) -> list[str]:
    lines = [
        "| VN | D | method | time (ms) | peak memory (GiB) | time / dense | time / floor | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        dense, floor = find(cells, cell.vn, cell.dim, "dense"), find(cells, cell.vn, cell.dim, "floor")
        time_ms = f"{cell.seconds * 1e3:.1f}" if cell.seconds is not None else "—"
        memory = f"{cell.peak_gib:.2f}" if cell.peak_gib is not None else ("n/a (CPU)" if cell.seconds else "—")
        values = [str(cell.vn), str(cell.dim), cell.method, time_ms, memory, ratio(cell, dense), ratio(cell, floor)]
        lines.append("| " + " | ".join([*values, cell.note]) + " |")
    return lines


def bar_lines(cells: Sequence[Cell]) -> list[str]:
    """The requirement per size: scpt <= dense where dense ran; scpt <= 2x floor for VN >= 32768."""
    lines = []
    for vn, dim in dict.fromkeys((c.vn, c.dim) for c in cells):
        scpt, dense, floor = (find(cells, vn, dim, m) for m in ("scpt", "dense", "floor"))
        if scpt is None or scpt.seconds is None:
            lines.append(f"- VN {vn}, D {dim}: no scpt time ({scpt.note if scpt else 'not run'})")
            continue
        parts = []
        if dense is not None and dense.seconds is not None:
            verdict = "met" if scpt.seconds <= dense.seconds else "NOT met"
            parts.append(f"scpt/dense {scpt.seconds / dense.seconds:.2f} (<= 1: {verdict})")
        else:
            parts.append("dense did not run")
        if floor is not None and floor.seconds is not None:
            within = scpt.seconds / floor.seconds
            needed = vn >= 32768
            verdict = ("met" if within <= 2.0 else "NOT met") if needed else "not required below VN 32768"
            parts.append(f"scpt/floor {within:.2f} (<= 2: {verdict})")
        lines.append(f"- VN {vn}, D {dim}: " + "; ".join(parts))
    return lines


# --------------------------------------------------------------------------------------------------
# main


def header(device: torch.device) -> list[str]:
    """The machine, versions and settings, and the chunk each size gets on this device."""
    try:
        import pytorch_metric_learning

        pml = pytorch_metric_learning.__version__
    except ImportError:
        pml = "not installed"
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run([*git, "status", "--porcelain", "scpt"], capture_output=True, text=True, timeout=10)
        revision = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        revision = ""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        where = f"{props.name}, {props.total_memory / GIB:.0f} GiB, {props.multi_processor_count} SMs"
        where += f", CUDA {torch.version.cuda}"
    else:
        where = f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"
    lines = [
        f"Device: {where}; torch {torch.__version__}, Python {platform.python_version()}, "
        f"pytorch-metric-learning {pml}, scpt @ {revision or 'unknown'}",
        f"TF32 matmul: {torch.backends.cuda.matmul.allow_tf32} (fp32 products are full fp32)",
    ]
    free = logsumexp.free_device_bytes(device)
    rules = []
    for vn in (8192, 32768, 65536, 131072):
        rows = logsumexp.default_chunk_rows(vn, vn, 4, free)
        rules.append(f"VN {vn}: {'dense' if rows is None else f'{rows} rows'}")
    free_text = f"{free / GIB:.0f} GiB free" if free is not None else "CPU rule"
    lines.append(f"scpt's automatic chunk ({free_text}): " + ", ".join(rules))
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (to test this script without a GPU)")
    parser.add_argument("--small", action="store_true", help="small sizes (VN 2048-4096; mid-size check VN 2200)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per cell (median)")
    parser.add_argument("--budget-s", type=float, default=240.0, help="skip the remaining cells after this many s")
    parser.add_argument("--skip-table", action="store_true", help="exactness only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.cpu:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        print("error: no CUDA device; run with --cpu --small to try this script on the CPU", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # the default; the floor and every method run full fp32
    for line in header(device):
        print(line)

    print("\n## (a) Exactness\n")
    print("| check | loss rel. error | gradient rel. error | |")
    print("|---|---|---|---|")
    checks = exactness(device, args.small)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"\nexactness: {len(checks) - len(failed)}/{len(checks)} passed ({time.perf_counter() - started:.0f} s)")

    if not args.skip_table:
        print("\n## (b) SupCon L_out, V = 2, 100 classes, fp32, forward + backward\n", flush=True)
        cells = table(device, args.small, args.repeats, args.budget_s, started)
        print()
        print("\n".join(format_table(cells)))
        print()
        print("\n".join(bar_lines(cells)))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if failed:
        print(f"EXACTNESS FAILED: {', '.join(c.name for c in failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
