#!/usr/bin/env bash
# Start the service under gunicorn with Prometheus multiprocess metrics set up right:
# the metrics folder must be set before gunicorn starts (its on_starting hook in
# service/gunicorn_conf.py then empties or creates it).
# Settings come from FER_* variables (see service/config.py and .env.example).
set -euo pipefail
cd "$(dirname "$0")/.."
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-${TMPDIR:-/tmp}/fer-metrics-$$}
if [[ -z ${FER_YUNET_MODEL:-} && -f ../shared/pretrained/face_detection_yunet_2023mar.onnx ]]; then
  # Developer machines have the YuNet file beside the repo; elsewhere BlazeFace is used.
  export FER_YUNET_MODEL=../shared/pretrained/face_detection_yunet_2023mar.onnx
fi
exec gunicorn -c service/gunicorn_conf.py
