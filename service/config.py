"""Service settings: one frozen object read from ``FER_*`` environment variables."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
RUNTIMES = ("auto", "openvino", "tensorflow")  # service/model/runtime.py says what each means
PRECISIONS = ("auto", "bf16", "f32")


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class Settings:
    """Every knob of the service; ``FER_<FIELD>`` in the environment overrides a default."""

    model_dir: Path = field(
        default=_ROOT / "models" / "emotion",
        metadata={"doc": "models/<name> folder with numbered versions, or one version folder"},
    )
    detector: str = field(
        default="auto",
        metadata={"doc": "yunet, yunet-opencv, blazeface or auto (yunet when its file is set)"},
    )
    yunet_model: str = field(
        default="", metadata={"doc": "path to face_detection_yunet_2023mar.onnx"}
    )
    detector_score: float = field(
        default=0.0,
        metadata={"doc": "minimum detector score; 0 = backend default (YuNet 0.7, BlazeFace 0.5)"},
    )
    # 800: a photo of 1,600 px or more decodes at 1/2 scale or less: on 2400x1800 JPEGs
    # the whole call took 32 instead of 58 ms. A face keeps at least half its pixels (the
    # classifier learnt on FER2013's 48-px faces, enlarged to 96): on 1,232 tw-posed faces
    # placed 90-220 px wide in such photos, 96.9% of answers stayed the same and accuracy
    # went from 49.9% to 49.6%, within chance (python -m bench.decode_scale,
    # docs/performance.md). 1600 before: only photos of 3,200 px and more were reduced.
    decode_max_side: int = field(
        default=800,
        metadata={"doc": "JPEGs twice this long side or more decode at reduced scale; 0 = off"},
    )
    detect_max_side: int = field(
        default=640, metadata={"doc": "images are downscaled to this long side for detection"}
    )
    max_upload_mb: float = field(
        default=10.0, metadata={"doc": "largest accepted request body, MB"}
    )
    max_pixels: int = field(
        default=40_000_000, metadata={"doc": "largest decoded image, pixels (bomb guard)"}
    )
    max_faces: int = field(
        default=20, metadata={"doc": "faces classified per image unless the request says (max 100)"}
    )
    max_batch_images: int = field(
        default=16, metadata={"doc": "most images in one /predict/batch request"}
    )
    max_infer_faces: int = field(
        default=64, metadata={"doc": "most face crops in one v2 infer request to the classifier"}
    )
    runtime: str = field(
        default="auto",
        metadata={
            "doc": "openvino, tensorflow, or auto: TensorFlow on a GPU it sees, else OpenVINO"
        },
    )
    precision: str = field(
        default="auto",
        metadata={
            "doc": "OpenVINO compute precision (classifier and YuNet): bf16, f32, or auto "
            "(bf16 where native)"
        },
    )
    inference_threads: int = field(
        default=0,
        metadata={"doc": "OpenVINO threads per worker; 0 = the CPU's cores / FER_WORKERS"},
    )
    cache_dir: str = field(
        default=str(Path(tempfile.gettempdir()) / "fer-openvino-cache"),
        metadata={
            "doc": "OpenVINO's converted and compiled models, for faster starts; empty = off"
        },
    )
    flip_tta: bool = field(
        default=True, metadata={"doc": "average each face with its mirror image"}
    )
    calibration: bool = field(
        default=True,
        metadata={
            "doc": "apply the version's calibration (temperature, uncertain threshold); "
            "false = the network's probabilities"
        },
    )
    reload_seconds: float = field(
        default=30.0,
        metadata={"doc": "check for a newer model version this often, s; 0 = only on SIGHUP"},
    )
    batch: bool = field(
        default=False,  # measured: no gain on a 2-core CPU (docs/performance.md, batching)
        metadata={"doc": "classify faces of concurrent requests in one model call"},
    )
    batch_max_faces: int = field(
        default=16, metadata={"doc": "dynamic batching: most faces in one model call"}
    )
    batch_wait_ms: float = field(
        default=5.0,
        metadata={"doc": "dynamic batching: longest wait for other requests' faces, ms"},
    )
    api_key: str = field(
        default="", metadata={"doc": "when set, /predict* need it in the X-API-Key header"}
    )
    video_max_upload_mb: float = field(
        default=100.0, metadata={"doc": "largest /predict/video upload, MB"}
    )
    video_max_seconds: float = field(
        default=120.0,  # measured to finish well inside FER_TIMEOUT (docs/video.md, "Limits")
        metadata={"doc": "longest stretch of video one request analyses, s; longer: a window"},
    )
    video_max_frames: int = field(
        default=480, metadata={"doc": "most video frames one request analyses"}
    )
    video_tmp_dir: str = field(
        default="",
        metadata={"doc": "video uploads while analysed; one folder per worker, emptied at start"},
    )
    workers: int = field(default=2, metadata={"doc": "gunicorn worker processes"})
    threads: int = field(default=4, metadata={"doc": "threads per gunicorn worker"})
    worker_class: str = field(
        default="sync",  # measured: lowest latency, same throughput (docs/performance.md)
        metadata={"doc": "gunicorn worker class: sync or gthread (threads, batching)"},
    )
    bind: str = field(default="0.0.0.0:8000", metadata={"doc": "gunicorn listen address"})
    timeout: int = field(
        default=120, metadata={"doc": "gunicorn worker timeout, s (above load + warm-up)"}
    )
    log_level: str = field(default="INFO", metadata={"doc": "logging level"})
    json_logs: bool = field(default=True, metadata={"doc": "one JSON object per log line"})

    def __post_init__(self) -> None:
        # Refuse a misspelt choice at start, in the gunicorn master, not in every worker.
        choices = {"runtime": RUNTIMES, "precision": PRECISIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SettingsError(
                    f"FER_{name.upper()}={getattr(self, name)!r}: choose from {', '.join(allowed)}"
                )
        if self.inference_threads < 0:
            raise SettingsError("FER_INFERENCE_THREADS must be 0 (automatic) or more")

    def threads_per_worker(self) -> int:
        """OpenVINO threads for one worker: as set, or the cores shared among the workers."""
        if self.inference_threads:
            return self.inference_threads
        return max(1, len(os.sched_getaffinity(0)) // max(1, self.workers))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Defaults, then ``FER_*`` variables, then keyword overrides (for tests)."""
        source: Mapping[str, str] = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(f"FER_{f.name.upper()}")
            if raw is None:
                continue
            try:
                values[f.name] = _parse(f.type, raw)
            except ValueError as e:
                raise SettingsError(f"FER_{f.name.upper()}={raw!r}: {e}") from None
        values.update(overrides)
        return cls(**values)


def _parse(typ, raw: str):
    name = typ if isinstance(typ, str) else typ.__name__
    if name == "bool":
        return _bool(raw)
    if name == "int":
        return int(raw)
    if name == "float":
        return float(raw)
    if name == "Path":
        return Path(raw)
    return raw
