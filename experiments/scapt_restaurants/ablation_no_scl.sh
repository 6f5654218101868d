#!/bin/bash
# Run from the repository root: bash experiments/scapt_restaurants/ablation_no_scl.sh [output_dir [pre-training args...]]
# Extra arguments go to `scpt pretrain fit` after the config (e.g. `--trainer.max_epochs 1` for Round 2's schedule).
# Ablation: the same pre-training without the contrastive term (lambda_scl = 0), then the same fine-tuning seeds.
# Rerunning continues where a killed run stopped: pre-training from its last.ckpt (saved every 100 steps),
# fine-tuning from its unfinished seed; finished stages are kept.
set -euo pipefail
: "${SCPT_DATA_DIR:?set SCPT_DATA_DIR to the directory of the ABSA datasets (scpt data download)}"
export SCPT_DATA_DIR HF_HUB_OFFLINE=1 WANDB_MODE=${WANDB_MODE:-disabled}
out=${1:-runs/ablation/no_scl}
shift $(( $# > 0 ? 1 : 0 ))
start=$(date +%s)
last=$out/pretrain/restaurants/version_0/checkpoints/last.ckpt
if [ ! -d "$out/encoder" ]; then
  resume=()
  if [ -f "$out/pretrain/time.json" ]; then :  # pre-training finished; only the export is missing
  elif [ -f "$last" ]; then resume=(--ckpt_path "$last"); fi
  if [ ! -f "$out/pretrain/time.json" ]; then
    scpt pretrain fit --config configs/pretrain/restaurants.yaml --model.lambda_scl 0 \
      --trainer.default_root_dir "$out/pretrain" --trainer.logger.init_args.save_dir "$out/pretrain" \
      --trainer.enable_progress_bar false "$@" "${resume[@]}"
    echo "{\"seconds\": $(( $(date +%s) - start ))}" > "$out/pretrain/time.json"
  fi
  echo "pretrain seconds $(( $(date +%s) - start ))"
  scpt export "$last" "$out/encoder"
fi
scpt finetune seeds --config configs/finetune/restaurants.yaml --seeds 1 2 3 --output-dir "$out/finetune" \
  -- --trainer.enable_progress_bar false --model.encoder "$out/encoder"
echo "total seconds $(( $(date +%s) - start ))"
