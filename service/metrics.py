"""Prometheus metrics, correct across gunicorn workers (prometheus-client multiprocess mode).

Metrics are module-level, as the client library expects: in multiprocess mode every
worker writes its values to files in PROMETHEUS_MULTIPROC_DIR and each scrape merges
them through a fresh registry with a MultiProcessCollector (prometheus-client docs).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 2.5, 5, 10)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

REQUESTS = Counter(
    "fer_http_requests_total",
    "HTTP requests by endpoint, method and status",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "fer_http_request_duration_seconds",
    "HTTP request latency",
    ["endpoint", "method"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "fer_http_requests_in_flight", "requests being served", multiprocess_mode="livesum"
)
STAGE = Histogram(
    "fer_stage_duration_seconds",
    "time per pipeline stage per image",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
FACES = Histogram(
    "fer_faces_per_image", "faces classified per image", buckets=(0, 1, 2, 3, 4, 5, 8, 12, 20, 50)
)
BATCH_REQUESTS = Histogram(
    "fer_batch_requests",
    "requests whose faces went through one model call (dynamic batching)",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
PREDICTIONS = Counter("fer_predictions_total", "faces classified, by top emotion", ["emotion"])
# Faces whose calibrated confidence is under the threshold in effect: a rising share means
# traffic is drifting away from the faces the model knows (docs/api.md, "Calibrated
# confidences and the uncertain flag").
UNCERTAIN = Counter(
    "fer_uncertain_predictions_total",
    "faces classified with a confidence under the uncertain threshold, by top emotion",
    ["emotion"],
)
ERRORS = Counter("fer_errors_total", "error responses by error code", ["code"])
MODEL_INFO = Gauge(
    "fer_model_info",
    "the model a worker serves (1 when loaded)",
    ["name", "version", "runtime", "precision"],
    multiprocess_mode="livemax",
)
# Which YuNet or BlazeFace serves, and on what: OpenVINO where installed, else OpenCV's DNN,
# in bf16 or f32. A worker started without OpenVINO detects 2-3x slower (docs/performance.md, "Face
# detectors"), which operators should see on a dashboard, not only in /ready.
DETECTOR_INFO = Gauge(
    "fer_detector_info",
    "the face detector a worker uses (1 while it serves)",
    ["name", "runtime", "precision"],
    multiprocess_mode="livemax",
)
RELOADS = Counter(
    "fer_model_loads_total",
    "model versions loaded or refused (a broken new version keeps the old one live)",
    ["result"],
)
MODEL_READY = Gauge(
    "fer_model_ready", "1 when the worker's model is loaded and warm", multiprocess_mode="livemin"
)

VIDEO_FRAMES = Counter("fer_video_frames_analysed_total", "video frames analysed")
VIDEO_SECONDS = Histogram(
    "fer_video_duration_seconds",
    "length of the part of each video analysed (its window), s",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600),
)
VIDEO_STAGE = Histogram(
    "fer_video_frame_stage_duration_seconds",
    "time per stage per analysed video frame (decode counts the skipped frames too)",
    ["stage"],
    buckets=STAGE_BUCKETS,
)


def observe_image(
    seconds: dict[str, float], emotions: list[str], uncertain: list[bool | None] | None = None
) -> None:
    """Record one image's stage timings (s), face count and each face's top emotion, and
    which of them were uncertain."""
    for stage, s in seconds.items():
        STAGE.labels(stage).observe(s)
    FACES.observe(len(emotions))
    observe_faces(emotions, uncertain)


def observe_faces(emotions: list[str], uncertain: list[bool | None] | None = None) -> None:
    """Count classified faces by top emotion, and the uncertain ones."""
    for emotion, unsure in zip(emotions, uncertain or [None] * len(emotions), strict=True):
        PREDICTIONS.labels(emotion).inc()
        if unsure:
            UNCERTAIN.labels(emotion).inc()


def set_model(name: str, version: str, runtime: str, precision: str, ready: bool) -> None:
    MODEL_INFO.labels(name, version, runtime, precision).set(1 if ready else 0)
    MODEL_READY.set(1 if ready else 0)


def set_detector(name: str, runtime: str, precision: str) -> None:
    DETECTOR_INFO.labels(name, runtime, precision).set(1)


def exposition() -> tuple[bytes, str]:
    """The /metrics body: merged over all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)


def observe_video_frame(seconds: dict[str, float]) -> None:
    """Record one analysed video frame's stage timings."""
    VIDEO_FRAMES.inc()
    for stage, s in seconds.items():
        VIDEO_STAGE.labels(stage).observe(s)
