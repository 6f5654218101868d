#!/bin/bash
# Run from the repository root:
#   bash experiments/scapt_restaurants/pretrain_then_finetune.sh OUTPUT_DIR [pre-training args...]
# One arm of the Restaurant experiment outside `scpt pipeline`: pre-train with configs/pretrain/restaurants.yaml
# plus the extra arguments (e.g. `--model.lambda_scl 0` for the ablation, `--seed_everything 8` for another
# pre-training seed), export the encoder, fine-tune it on seeds 1-3 (configs/finetune/restaurants.yaml).
# The direct arm is not rerun: it does not depend on pre-training (runs/pipeline/*/finetune/direct).
# Rerunning continues where a killed run stopped: pre-training from its last.ckpt (saved every 100 steps),
# fine-tuning from its unfinished seed; finished stages are kept.
set -euo pipefail
: "${SCPT_DATA_DIR:?set SCPT_DATA_DIR to the directory of the ABSA datasets (scpt data download)}"
export SCPT_DATA_DIR HF_HUB_OFFLINE=1 WANDB_MODE=${WANDB_MODE:-disabled}
out=${1:?usage: pretrain_then_finetune.sh OUTPUT_DIR [pre-training args...]}
shift
start=$(date +%s)
last=$out/pretrain/restaurants/version_0/checkpoints/last.ckpt
if [ ! -d "$out/encoder" ]; then
  resume=()
  if [ -f "$out/pretrain/time.json" ]; then :  # pre-training finished; only the export is missing
  elif [ -f "$last" ]; then resume=(--ckpt_path "$last"); fi
  if [ ! -f "$out/pretrain/time.json" ]; then
    scpt pretrain fit --config configs/pretrain/restaurants.yaml \
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
