"""The application factory: settings, the analyzer (model slot, detector), hooks, errors, routes."""

from __future__ import annotations

import logging

from flask import Flask

from service import metrics
from service.analyzer import Analyzer
from service.api import hooks
from service.config import Settings
from service.detection import Detector
from service.errors import register_error_handlers
from service.model.classifier import Classifier
from service.model.registry import ModelSlot
from service.state import State, install
from service.video.scratch import Scratch

log = logging.getLogger("service")


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
    versions (service.model.registry).
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)  # the web blueprint serves /static
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_mb * 1024 * 1024)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep fields in schema order
    own_slot = models is None and model is None  # the configured model folder's
    if models is None and model is not None:
        models = ModelSlot.fixed(model)
    analyzer = Analyzer.from_settings(settings, models, detector)
    d = analyzer.detector
    metrics.set_detector(d.name, d.runtime, d.precision)
    if own_slot:
        if not load_async:
            # gunicorn workers load before they accept connections: a new or replaced
            # worker takes no request it could only answer with 503.
            analyzer.models.check()
        analyzer.models.start()  # (the first) load, then watch for newer versions
    install(app, State(settings, analyzer, Scratch.from_settings(settings)))
    hooks.register(app)
    register_error_handlers(app)
    from service.api.docs import bp as docs
    from service.api.routes import bp
    from service.api.web import bp as web
    from service.v2.routes import bp as v2
    from service.video.routes import bp as video

    app.register_blueprint(bp)
    app.register_blueprint(web)
    app.register_blueprint(docs)  # /docs: Swagger UI over openapi.yaml
    app.register_blueprint(video)  # /predict/video
    app.register_blueprint(v2)  # the Open Inference Protocol (/v2)
    return app
