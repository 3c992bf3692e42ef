#!/usr/bin/env bash
# Every endpoint from curl. Usage: scripts/curl_examples.sh PHOTO.jpg [BASE_URL] [CLIP.mp4]
# With FER_API_KEY set on the server, export the same FER_API_KEY here.
set -euo pipefail
IMG=${1:?usage: $0 PHOTO.jpg [BASE_URL]}
URL=${2:-http://localhost:8000}
CLIP=${3:-}
KEY=()
[[ -n ${FER_API_KEY:-} ]] && KEY=(-H "X-API-Key: $FER_API_KEY")

echo "# liveness and readiness"
curl -sS "$URL/health"; echo
curl -sS "$URL/ready"; echo

echo "# multipart upload, with options"
curl -sS "${KEY[@]}" -F "image=@$IMG" -F top_k=2 "$URL/predict?max_faces=5"; echo

echo "# raw body"
curl -sS "${KEY[@]}" -H "Content-Type: image/jpeg" --data-binary "@$IMG" "$URL/predict"; echo

echo "# base64 JSON"
printf '{"image": "%s", "top_k": 1}' "$(base64 -w0 "$IMG")" |
  curl -sS "${KEY[@]}" -H "Content-Type: application/json" --data-binary @- "$URL/predict"; echo

echo "# pre-cropped face: no detection"
curl -sS "${KEY[@]}" -F "image=@$IMG" "$URL/predict?detect=false"; echo

echo "# several images at once"
curl -sS "${KEY[@]}" -F "image=@$IMG" -F "image=@$IMG" "$URL/predict/batch"; echo

if [[ -n $CLIP ]]; then
  echo "# a video: 2 frames/s, the first 30 s, smoothed labels (JSON: frames and tracks)"
  curl -sS "${KEY[@]}" -F "video=@$CLIP" "$URL/predict/video?fps=2&end=30&smoothing=1" |
    head -c 600; echo
  echo "# the same as NDJSON, one line per frame as it is analysed (-N: no buffering)"
  curl -sSN "${KEY[@]}" -H "Content-Type: video/mp4" --data-binary "@$CLIP" \
    "$URL/predict/video?fps=2&end=30&stream=true" | cut -c1-120
fi

echo "# model metadata and Prometheus metrics"
curl -sS "$URL/v1/models"; echo
curl -sS "$URL/metrics" | grep '^fer_' | head -20
