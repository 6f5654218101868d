#!/bin/bash
# Run from the repository root: bash experiments/scapt_restaurants/ablation_no_scl.sh [output_dir [pre-training args...]]
# Extra arguments go to `scpt pretrain fit` after the config (e.g. `--trainer.max_epochs 1` for Round 2's schedule).
# Ablation: the same pre-training without the contrastive term (lambda_scl = 0), then the same fine-tuning seeds.
# Rerunning continues where a killed run stopped (see pretrain_then_finetune.sh).
set -euo pipefail
out=${1:-runs/ablation/no_scl}
shift $(( $# > 0 ? 1 : 0 ))
exec bash "$(dirname "${BASH_SOURCE[0]}")/pretrain_then_finetune.sh" "$out" --model.lambda_scl 0 "$@"
