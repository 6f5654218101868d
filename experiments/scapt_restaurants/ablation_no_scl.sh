#!/bin/bash
# Run from the repository root: bash experiments/scapt_restaurants/ablation_no_scl.sh [output_dir [pre-training args...]]
# Extra arguments go to `scpt pretrain fit` after the config, e.g. `--trainer.max_epochs 3` to match a longer pipeline.
# Ablation: the same pre-training without the contrastive term (lambda_scl = 0), then the same fine-tuning seeds.
set -euo pipefail
: "${SCPT_DATA_DIR:?set SCPT_DATA_DIR to the directory of the ABSA datasets (scpt data download)}"
export SCPT_DATA_DIR HF_HUB_OFFLINE=1 WANDB_MODE=${WANDB_MODE:-disabled}
out=${1:-runs/ablation/no_scl}
shift $(( $# > 0 ? 1 : 0 ))
start=$(date +%s)
scpt pretrain fit --config configs/pretrain/restaurants.yaml --model.lambda_scl 0 \
  --trainer.default_root_dir $out/pretrain --trainer.logger.init_args.save_dir $out/pretrain --trainer.enable_progress_bar false "$@"
echo "pretrain seconds $(( $(date +%s) - start ))"
scpt export $out/pretrain/restaurants/version_0/checkpoints/last.ckpt $out/encoder
scpt finetune seeds --config configs/finetune/restaurants.yaml --seeds 1 2 3 --output-dir $out/finetune \
  -- --trainer.enable_progress_bar false --model.encoder $out/encoder
echo "total seconds $(( $(date +%s) - start ))"
