#!/usr/bin/env bash
# SupCon L_out vs L_in as the phase-1 contrastive loss, then phase-2 fine-tuning on the same 3 seeds.
# Everything else is the shipped phase 1 (tau 0.5, base_temperature 0.07, 4096-entry queue with momentum
# keys, MAP and RR) at a CPU-sized budget of STEPS pre-training steps; phase 2 is the shipped config.
#   bash experiments/lout_vs_lin/run.sh restaurants laptops      # ~30 min per dataset on 2 CPU cores
#   python experiments/lout_vs_lin/summarize.py runs/lout_vs_lin  # the tables of RESULTS.md
# Reruns skip finished stages (a finished pre-training's export, finished seeds).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/lout_vs_lin}
STEPS=${STEPS:-150}
SEEDS=${SEEDS:-"1 2 3"}
for dataset in "$@"; do
  for variant in out in; do
    run="$OUT/$dataset/$variant"
    if [ ! -d "$run/encoder" ]; then
      rm -rf "$run/pretrain"
      start=$(date +%s)
      scpt pretrain fit --config "configs/pretrain/$dataset.yaml" \
        --model.loss.init_args.variant "$variant" \
        --trainer.max_steps "$STEPS" --trainer.max_epochs -1 \
        --trainer.check_val_every_n_epoch null --trainer.val_check_interval "$((STEPS / 2))" \
        --trainer.default_root_dir "$run/pretrain" --trainer.logger.init_args.save_dir "$run/pretrain"
      echo "{\"seconds\": $(( $(date +%s) - start )), \"steps\": $STEPS}" > "$run/pretrain/time.json"
      scpt export "$run/pretrain/$dataset/version_0/checkpoints/last.ckpt" "$run/encoder"
    fi
    # shellcheck disable=SC2086
    scpt finetune seeds --config "configs/finetune/$dataset.yaml" --seeds $SEEDS \
      --output-dir "$run/finetune" --model.encoder "$run/encoder"
  done
done
