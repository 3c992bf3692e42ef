#!/usr/bin/env bash
# A candidate version against the shipped one, side by side in one run, on everything the
# gate for a new default looks at (#32): FER+ PublicTest and PrivateTest with flip TTA,
# tw-posed through the service's detection (bench.cross_dataset), the robustness table
# (bench.robustness, PublicTest) and the classification cost (bench.runtimes, one thread).
#   [OUT=runs/compare] scripts/compare_versions.sh models/emotion/6 models/emotion/16 [MORE...]
# The first version is the baseline of the cost ratios. PrivateTest is the test split: read
# it once per shipped version, never to choose.
set -euo pipefail
cd "$(dirname "$0")/.."
(($# >= 2)) || { echo "usage: $0 OLD_VERSION_DIR NEW_VERSION_DIR [MORE...]" >&2; exit 2; }
VERSIONS=("$@")
OUT=${OUT:-runs/compare-$(printf '%s-' "${VERSIONS[@]##*/}" | sed 's/-$//')}
DIRS=()
for v in "${VERSIONS[@]}"; do DIRS+=(--model-dir "$v"); done
SHARED=${FER_SHARED:-../shared}
DATA=$SHARED/data/fer2013
mkdir -p "$OUT"
lscpu | grep -E "Model name" | sed 's/  */ /g' | tee "$OUT/cpu.txt"
grep -o -w -E "avx512f|avx512_bf16|amx_bf16" /proc/cpuinfo | sort -u | tr '\n' ' ' | tee -a "$OUT/cpu.txt"
echo | tee -a "$OUT/cpu.txt"
for split in val test; do
  for model in "${VERSIONS[@]}"; do
    python -m trainer evaluate "$model" "$DATA" --labels "$DATA/ferplus.csv" \
      --label-column ferplus_label --split $split --tta flip \
      | python -c "import json,sys; r=json.load(sys.stdin); print('$split', r['model'], r['images'], 'accuracy', round(r['accuracy'],4), 'macro F1', round(r['macro_f1'],4))"
  done
done | tee "$OUT/ferplus.txt"
# The fer library beside them where it is installed (make compare-fer installs it).
FER=$(python -c "import fer" 2>/dev/null && echo --fer || true)
python -m bench.cross_dataset "${VERSIONS[@]}" --data "$SHARED/data/tw-posed" $FER \
  | tee "$OUT/tw_posed.txt"
python -m bench.robustness --split val "${DIRS[@]}" --out "$OUT" | tee "$OUT/robustness.txt"
python -m bench.runtimes "${DIRS[@]}" --skip agreement --calls 300 | tee "$OUT/runtimes.txt"
echo "wrote $OUT"
