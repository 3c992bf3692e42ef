"""The WSGI entry point gunicorn imports in every worker (no --preload: see gunicorn_conf)."""

from service.config import Settings
from service.logs import configure

settings = Settings.from_env()
configure(settings.log_level, settings.json_logs)

from service.app import create_app  # noqa: E402 - logging first, then the app

app = create_app(settings, load_async=False)
