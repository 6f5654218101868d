#!/bin/bash
# Run from the repository root: bash experiments/scapt_laptops/ablation_no_scl.sh [output_dir]
# Ablation on Laptop: the same pre-training without the contrastive term (lambda_scl = 0), then the same
# fine-tuning seeds as configs/pipeline/laptops.yaml.
set -euo pipefail
: "${SCPT_DATA_DIR:?set SCPT_DATA_DIR to the directory of the ABSA datasets (scpt data download)}"
export SCPT_DATA_DIR HF_HUB_OFFLINE=1 WANDB_MODE=${WANDB_MODE:-disabled}
out=${1:-runs/ablation/laptops_no_scl}
start=$(date +%s)
scpt pretrain fit --config configs/pretrain/laptops.yaml --model.lambda_scl 0 \
  --trainer.default_root_dir $out/pretrain --trainer.logger.init_args.save_dir $out/pretrain
echo "pretrain seconds $(( $(date +%s) - start ))"
scpt export $out/pretrain/laptops/version_0/checkpoints/last.ckpt $out/encoder
scpt finetune seeds --config configs/finetune/laptops.yaml --seeds 1 2 3 --output-dir $out/finetune \
  --model.encoder $out/encoder
echo "total seconds $(( $(date +%s) - start ))"
