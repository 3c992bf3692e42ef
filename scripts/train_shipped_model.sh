#!/usr/bin/env bash
# Train the model the service ships (models/emotion/<version>) from ../shared data.
#   scripts/train_shipped_model.sh [RUN_DIR]    (logs: RUN_DIR/{a,b}/train.log)
# Two runs of the trainer, one after the other, both resumable (run the script again with
# the same RUN_DIR and it continues from the last finished epoch):
#   a) 1 epoch head warm-up + 14 epochs full fine-tune from ImageNet weights, cosine from
#      1e-3 (this alone is models/emotion/1), exported into RUN_DIR/a-models;
#   b) a warm restart from a)'s export: 10 more epochs, cosine from 3e-4, exported into
#      models/ as the next version. Validation accuracy was still rising at the end of a).
#      No early stopping: validation loss rises while the rate is high and falls as it
#      decays (a first try with patience 4 stopped after 5 epochs, at the worst point).
# FER_INIT_FROM=models/emotion/1 skips a) and restarts from that exported version instead.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FER_SHARED:-../shared}
RUN_DIR=${1:-runs/emotion-shipped}
COMMON=(
  --recipe finetune
  --labels "$SHARED/data/fer2013/ferplus.csv" --label-column ferplus_label --soft-labels
  --base-weights "$SHARED/pretrained/mobilenet_v2_1.0_imagenet_no_top.h5"
  --drop-blank --seed 42
)

train() {  # train RUN MODELS_DIR [options...]: start the run, or resume it
  local run=$1 models=$2
  shift 2
  mkdir -p "$run"
  if [[ -f $run/config.json ]]; then
    python -m trainer train --resume "$run" --models-dir "$models" >>"$run/train.log" 2>&1
  else
    python -m trainer train "$SHARED/data/fer2013" "${COMMON[@]}" --run-dir "$run" \
      --models-dir "$models" "$@" >>"$run/train.log" 2>&1
  fi
}

INIT=${FER_INIT_FROM:-}
if [[ -z $INIT ]]; then
  INIT=$RUN_DIR/a-models/emotion/1
  if [[ ! -f $INIT/metadata.json ]]; then
    train "$RUN_DIR/a" "$RUN_DIR/a-models" --stage1-epochs 1 --stage2-epochs 14
  fi
fi
train "$RUN_DIR/b" models --init-from "$INIT" --stage1-epochs 0 --stage2-epochs 10 \
  --stage2-lr 3e-4 --early-stopping 0
