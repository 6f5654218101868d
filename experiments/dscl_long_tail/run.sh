#!/usr/bin/env bash
# DSCL vs SupCon L_out on a long-tailed corpus: the in-domain Restaurant corpus (Restaurant + MAMS train)
# with its training split subsampled to a 10:1 exponential tail (head neutral, then positive, tail
# negative: the corpus's own frequency order), held-out slice at the corpus's own distribution.
# Phase 1's contrastive term alone (no MAP/RR, no queue) on two dropout views, so that DSCL's alpha has
# the anchor's other view to weigh; tau 0.5 scaled by 0.5/0.07 for both losses, as phase 1 ships.
#   bash experiments/dscl_long_tail/run.sh                       # ~12 min a run on one CPU thread
#   python experiments/dscl_long_tail/summarize.py runs/dscl_long_tail --records experiments/dscl_long_tail/records
# Settings: SupCon L_out and DSCL at each alpha of ALPHAS; SEEDS seeds each (seed_everything, which also
# draws the batches). Reruns skip finished runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/dscl_long_tail}
STEPS=${STEPS:-300}
SEEDS=${SEEDS:-"1"}
ALPHAS=${ALPHAS:-"0.05 0.11 0.25 0.5"}
RATIO=${RATIO:-10}
common=(
  --config configs/pretrain/restaurants.yaml
  --model.lambda_map 0 --model.lambda_rr 0 --model.queue_size 0 --model.momentum 0
  --model.num_views 2 --model.probe_per_class true
  --data.imbalance_ratio "$RATIO" --data.val_size 1536 --data.probe_size 2048
  --trainer.max_steps "$STEPS" --trainer.max_epochs -1
  --trainer.check_val_every_n_epoch null --trainer.val_check_interval "$((STEPS / 2))"
  --trainer.enable_progress_bar false
)
run_one() {  # name seed loss-args...
  local name=$1 seed=$2 run="$OUT/$1/seed_$2"
  shift 2
  if [ -f "$run/time.json" ]; then echo "done: $run"; return; fi
  rm -rf "$run"
  local start
  start=$(date +%s)
  scpt pretrain fit "${common[@]}" "$@" --seed_everything "$seed" \
    --trainer.default_root_dir "$run" --trainer.logger.init_args.save_dir "$run"
  echo "{\"seconds\": $(( $(date +%s) - start )), \"steps\": $STEPS}" > "$run/time.json"
}
for seed in $SEEDS; do
  run_one supcon_out "$seed" --model.loss configs/loss/supcon_out_tau05.yaml
  for alpha in $ALPHAS; do
    run_one "dscl_alpha_$alpha" "$seed" --model.loss configs/loss/dscl.yaml \
      --model.loss.init_args.temperature 0.5 --model.loss.init_args.base_temperature 0.07 \
      --model.loss.init_args.alpha "$alpha"
  done
done
