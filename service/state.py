"""What one app serves with (settings, analyzer, video scratch), and the one way routes reach it.

``create_app`` installs the state; a route calls ``current_state()``, gunicorn's worker
hook ``state_of(app)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app
from flask.sansio.app import App

from service.analyzer import Analyzer
from service.config import Settings
from service.detection import Detector
from service.model.registry import ModelSlot
from service.video.scratch import Scratch

_KEY = "fer"  # in app.extensions


@dataclass(frozen=True)
class State:
    settings: Settings
    analyzer: Analyzer
    scratch: Scratch  # where video uploads wait while they are analysed

    @property
    def models(self) -> ModelSlot:
        return self.analyzer.models

    @property
    def detector(self) -> Detector:
        return self.analyzer.detector


def install(app: Flask, state: State) -> None:
    app.extensions[_KEY] = state


def state_of(app: App) -> State:
    return app.extensions[_KEY]


def current_state() -> State:
    """The state of the app handling the current request."""
    return state_of(current_app)
