"""``experiments/benchmarks/gpu_check.py``, the script a lent GPU runs, kept working on the CPU: its
exactness part (every loss, dense and chunked, float32 and float64, against the float64 references) passes
with ``--cpu --small`` and reports every check, and without a CUDA device and ``--cpu`` it exits 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from helpers import REPO

SCRIPT = REPO / "experiments" / "benchmarks" / "gpu_check.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def test_exactness_checks_pass_on_the_cpu() -> None:
    result = run_script("--cpu", "--small", "--skip-table")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    assert len(rows) == 27 and all(row.endswith("| ok |") for row in rows)
    # every loss on both paths in both dtypes, and the automatic chunk choice at the mid size
    for loss in ("SupCon L_out", "SupCon L_in", "DSCL alpha 0.2", "SimCSE hard negatives w 0.5", "SupCon L_in + queue"):
        for case in ("float64, dense path", "float64, chunks of 5", "float32, dense path", "float32, chunks of 5"):
            assert sum(row.startswith(f"| {loss}, {case} |") for row in rows) == 1, (loss, case)
    assert "exactness: 27/27 passed" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_it_exits_2_with_one_line() -> None:
    result = run_script("--skip-table")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no CUDA device; run with --cpu --small to try this script on the CPU"
