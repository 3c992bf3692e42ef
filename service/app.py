"""Flask inference service: detect faces, classify their emotion, report metrics."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from flask import Flask

from service import hooks, metrics
from service.config import Settings
from service.detection import Detector, make_detector
from service.errors import register_error_handlers
from service.model import Classifier, SavedModelClassifier
from service.pipeline import Analyzer

log = logging.getLogger("service")


@dataclass
class State:
    """What the routes reach through ``current_app.extensions["fer"]``."""

    settings: Settings
    model: Classifier
    detector: Detector
    analyzer: Analyzer


def create_app(
    settings: Settings | None = None,
    model: Classifier | None = None,
    detector: Detector | None = None,
    load_async: bool = True,
) -> Flask:
    """Build the app. Tests pass settings and fake model / detector objects.

    The model loads in a background thread (unless one is passed in), so ``/health``
    answers at once and ``/ready`` turns 200 when the model is loaded and warm.
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)  # the web blueprint serves /static
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_mb * 1024 * 1024)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep fields in schema order
    detector = detector or make_detector(
        settings.detector, settings.yunet_model, settings.detector_score, settings.detect_max_side
    )
    if model is None:
        saved = SavedModelClassifier(settings.model_dir, flip_tta=settings.flip_tta)
        _start_loading(saved, load_async)
        model = saved
    app.extensions["fer"] = State(
        settings, model, detector, Analyzer(model, detector, settings.max_pixels)
    )
    hooks.register(app)
    register_error_handlers(app)
    from service.routes import bp
    from service.web import bp as web

    app.register_blueprint(bp)
    app.register_blueprint(web)
    return app


def _start_loading(model: Classifier, load_async: bool) -> None:
    def load() -> None:
        model.load()
        metrics.set_model(model.name or "none", model.version or "none", model.ready)

    if load_async:
        threading.Thread(target=load, name="model-loader", daemon=True).start()
    else:
        load()
