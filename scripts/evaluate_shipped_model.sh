#!/usr/bin/env bash
# The benchmark evaluations of an exported model, each with `python -m trainer evaluate`
# (the exported SavedModel, called exactly as the service calls it), then tw-posed through
# the service's detection (python -m bench.cross_dataset). Results go to MODEL_DIR/eval/:
# one JSON, Markdown and confusion figure per set, and README.md.
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
  # PublicTest is the validation split: versions are chosen on it, never on PrivateTest.
  ev --labels "$DATA/ferplus.csv" --label-column ferplus_label --split val --tta $tta \
     --title "FER+ PublicTest, validation (majority label)$sfx"
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
    [[ $(basename "$f") == README.md || $(basename "$f") == tw_posed.md ]] && continue
    cat "$f"
    echo
    echo "![confusion matrix]($(basename "${f%.md}")_confusion.png)"
    echo
  done
} > "$OUT/README.md.tmp"
mv "$OUT/README.md.tmp" "$OUT/README.md"
# A summary table in the model card (replacing an earlier one).
python - "$MODEL" <<'PY'
import json, sys
from pathlib import Path
model = Path(sys.argv[1])
rows = ["| set | images | accuracy | macro F1 | recall disgust | recall fear |", "|---|---|---|---|---|---|"]
for f in sorted((model / "eval").glob("*.json")):
    r = json.loads(f.read_text())
    if "per_class" not in r:  # tw_posed.json: its own section, below
        continue
    title = f.stem.replace("_", " ")
    pc = r["per_class"]
    rows.append(f"| {title} | {r['images']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                f"{pc['disgust']['recall']:.3f} | {pc['fear']['recall']:.3f} |")
card = model / "MODEL_CARD.md"
text = card.read_text().split("\n## Benchmark evaluations")[0].rstrip() + "\n"
text += ("\n## Benchmark evaluations\n\nMeasured with `scripts/evaluate_shipped_model.sh` "
         "(per-class tables and confusion matrices in [eval/](eval/README.md)).\n\n"
         + "\n".join(rows) + "\n")
card.write_text(text)
PY
# Faces FER2013 never showed it (#32): tw-posed sent through the service's own detection,
# largest face, crop and runtime; figures into eval/tw_posed.*, metadata.json and the card.
if [[ -f $SHARED/data/tw-posed/manifest.csv ]]; then
  python -m bench.cross_dataset "$MODEL" --data "$SHARED/data/tw-posed" --write
fi
echo "wrote $OUT/README.md and the summary in $MODEL/MODEL_CARD.md"
