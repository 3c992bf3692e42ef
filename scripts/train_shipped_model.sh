#!/usr/bin/env bash
# Train the model the service ships (models/emotion/<version>) from ../shared data.
# Resumable: run it again with the same RUN_DIR and it continues from the last epoch.
#   scripts/train_shipped_model.sh [RUN_DIR]      (log: RUN_DIR/train.log)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FER_SHARED:-../shared}
RUN_DIR=${1:-runs/emotion-shipped}
mkdir -p "$RUN_DIR"
if [[ -f $RUN_DIR/config.json ]]; then
  exec python -m trainer train --resume "$RUN_DIR" >>"$RUN_DIR/train.log" 2>&1
fi
exec python -m trainer train "$SHARED/data/fer2013" \
  --recipe finetune \
  --labels "$SHARED/data/fer2013/ferplus.csv" --label-column ferplus_label --soft-labels \
  --base-weights "$SHARED/pretrained/mobilenet_v2_1.0_imagenet_no_top.h5" \
  --drop-blank --stage1-epochs 1 --stage2-epochs 14 --seed 42 \
  --run-dir "$RUN_DIR" >>"$RUN_DIR/train.log" 2>&1
