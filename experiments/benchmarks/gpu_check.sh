#!/usr/bin/env bash
# GPU check of scpt's loss path: exactness against the float64 references, then the timing table
# (experiments/benchmarks/RESULTS.md, "GPU check"). Needs only torch; times pytorch-metric-learning if
# it is importable. Under 5 minutes on an H200. Exit status: 1 if an exactness check failed, 2 if there
# is no CUDA device (pass --cpu --small to try it on a CPU).
#
#   bash experiments/benchmarks/gpu_check.sh                  # on the GPU machine, from any directory
#   bash experiments/benchmarks/gpu_check.sh --cpu --small    # the same checks on the CPU, small sizes
#
# Extra arguments go to gpu_check.py (--repeats N, --budget-s S, --skip-table).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [[ -f .device/env.sh ]]; then
    set +u
    # shellcheck disable=SC1091
    source .device/env.sh
    set -u
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
echo "# scpt GPU check, $(date -u +%Y-%m-%dT%H:%MZ), $(hostname)"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.max.sm --format=csv,noheader || true
fi
exec "$PYTHON" experiments/benchmarks/gpu_check.py "$@"
