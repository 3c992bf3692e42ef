#!/usr/bin/env bash
# The benchmark evaluations of an exported model, each with `python -m trainer evaluate`
# (the exported SavedModel, called exactly as the service calls it). Results go to
# MODEL_DIR/eval/: one JSON, Markdown and confusion figure per set, and README.md.
#   scripts/evaluate_shipped_model.sh models/emotion/1
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: $0 MODEL_DIR}
SHARED=${FER_SHARED:-../shared}
DATA=$SHARED/data/fer2013
OUT=$MODEL/eval
mkdir -p "$OUT"
ev() { python -m trainer evaluate "$MODEL" "$DATA" --out "$OUT" "$@"; }
for tta in none flip; do
  sfx=$([[ $tta == flip ]] && echo " + flip TTA" || true)
  ev --labels "$DATA/ferplus.csv" --label-column ferplus_label --split test --tta $tta \
     --title "FER+ PrivateTest (majority label)$sfx"
  ev --split test --tta $tta --title "FER2013 test, original labels, all 7178$sfx"
  ev --split test --tta $tta --exclude-duplicates-of "$DATA/train" --drop-blank \
     --title "FER2013 test, original labels, without train duplicates and blanks$sfx"
  ev --labels "$DATA/ferplus.csv" --label-column fer2013_label --split test --tta $tta \
     --title "FER2013 PrivateTest, original labels$sfx"
done
{
  echo "# Evaluation of $MODEL"
  echo
  echo "Each set evaluated with \`python -m trainer evaluate\`; reproduce with"
  echo "\`scripts/evaluate_shipped_model.sh $MODEL\`."
  echo
  for f in "$OUT"/*.md; do
    [[ $(basename "$f") == README.md ]] && continue
    cat "$f"
    echo
    echo "![confusion matrix]($(basename "${f%.md}")_confusion.png)"
    echo
  done
} > "$OUT/README.md.tmp"
mv "$OUT/README.md.tmp" "$OUT/README.md"
echo "wrote $OUT/README.md"
