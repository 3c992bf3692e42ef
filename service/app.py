"""Flask inference service: detect faces, classify their emotion, report metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from service import hooks
from service.batching import Batcher
from service.config import Settings
from service.detection import Detector, make_detector
from service.errors import register_error_handlers
from service.model import Classifier
from service.pipeline import Analyzer
from service.registry import ModelSlot
from service.runtime import classifier_factory

log = logging.getLogger("service")


@dataclass
class State:
    """What the routes reach through ``current_app.extensions["fer"]``."""

    settings: Settings
    models: ModelSlot
    detector: Detector
    analyzer: Analyzer


def create_app(
    settings: Settings | None = None,
    model: Classifier | None = None,
    detector: Detector | None = None,
    load_async: bool = True,
    models: ModelSlot | None = None,
) -> Flask:
    """Build the app. Tests pass settings and fake model / detector objects (or a
    ModelSlot with a fake factory, which the caller starts).

    With ``load_async`` the model loads in a background thread, so ``/health`` answers at
    once and ``/ready`` turns 200 when the model is warm; without it (gunicorn workers)
    it loads before the app is returned. Either way a thread then watches for newer
    versions (service.registry).
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)  # the web blueprint serves /static
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_mb * 1024 * 1024)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep fields in schema order
    detector = detector or make_detector(
        settings.detector,
        settings.yunet_model,
        settings.detector_score,
        settings.detect_max_side,
        settings.threads_per_worker(),
    )
    if models is None and model is not None:
        models = ModelSlot.fixed(model)
    elif models is None:
        models = ModelSlot(
            settings.model_dir,
            classifier_factory(
                settings.runtime,
                settings.precision,
                settings.threads_per_worker(),
                settings.flip_tta,
                Path(settings.cache_dir) if settings.cache_dir else None,
            ),
            settings.reload_seconds,
        )
        if not load_async:
            # gunicorn workers load before they accept connections: a new or replaced
            # worker takes no request it could only answer with 503.
            models.check()
        models.start()  # (the first) load, then watch for newer versions
    batcher = Batcher(settings.batch_max_faces, settings.batch_wait_ms) if settings.batch else None
    app.extensions["fer"] = State(
        settings,
        models,
        detector,
        Analyzer(models, detector, settings.max_pixels, batcher, settings.decode_max_side),
    )
    hooks.register(app)
    register_error_handlers(app)
    from service.inference_v2 import bp as v2
    from service.routes import bp
    from service.video.routes import bp as video
    from service.web import bp as web

    app.register_blueprint(bp)
    app.register_blueprint(web)
    app.register_blueprint(video)  # /predict/video
    app.register_blueprint(v2)  # the Open Inference Protocol (/v2)
    return app
