#!/usr/bin/env bash
# A candidate version against the shipped one, side by side in one run, on everything the
# gate for a new default looks at (#32): FER+ PublicTest and PrivateTest with flip TTA,
# tw-posed through the service's detection (bench.cross_dataset), the robustness table
# (bench.robustness, PublicTest) and the classification cost (bench.runtimes, one thread).
#   scripts/compare_versions.sh models/emotion/6 models/emotion/16 [OUT]
# PrivateTest is the test split: read it once per shipped version, never to choose.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?usage: $0 OLD_VERSION_DIR NEW_VERSION_DIR [OUT]}
NEW=${2:?usage: $0 OLD_VERSION_DIR NEW_VERSION_DIR [OUT]}
OUT=${3:-runs/compare-$(basename "$OLD")-$(basename "$NEW")}
SHARED=${FER_SHARED:-../shared}
DATA=$SHARED/data/fer2013
mkdir -p "$OUT"
lscpu | grep -E "Model name" | sed 's/  */ /g' | tee "$OUT/cpu.txt"
grep -o -w -E "avx512f|avx512_bf16|amx_bf16" /proc/cpuinfo | sort -u | tr '\n' ' ' | tee -a "$OUT/cpu.txt"
echo | tee -a "$OUT/cpu.txt"
for split in val test; do
  for model in "$OLD" "$NEW"; do
    python -m trainer evaluate "$model" "$DATA" --labels "$DATA/ferplus.csv" \
      --label-column ferplus_label --split $split --tta flip \
      | python -c "import json,sys; r=json.load(sys.stdin); print('$split', r['model'], r['images'], 'accuracy', round(r['accuracy'],4), 'macro F1', round(r['macro_f1'],4))"
  done
done | tee "$OUT/ferplus.txt"
python -m bench.cross_dataset "$OLD" "$NEW" --data "$SHARED/data/tw-posed" | tee "$OUT/tw_posed.txt"
python -m bench.robustness --split val --model-dir "$OLD" --model-dir "$NEW" --out "$OUT" \
  | tee "$OUT/robustness.txt"
python -m bench.runtimes --model-dir "$OLD" --model-dir "$NEW" --skip agreement --calls 300 \
  | tee "$OUT/runtimes.txt"
echo "wrote $OUT"
