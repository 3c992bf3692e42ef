"""The options of /predict/video (marshmallow), from the query string or the multipart
form, with the option types /predict's schema uses (service/api/schemas.py)."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from service.api.schemas import (
    FALSE,
    MAX_FACES_LIMIT,
    TRUE,
    Flag,
    Probability,
    WholeNumber,
    load_sources,
)
from service.video.analysis import VideoOptions


class VideoOptionsSchema(Schema):
    """Options of /predict/video, from the query string or the multipart form."""

    class Meta:
        unknown = RAISE

    fps = fields.Float(load_default=4.0, validate=validate.Range(0.1, 30))
    start = fields.Float(load_default=0.0, validate=validate.Range(0, 86_400))
    end = fields.Float(load_default=None, validate=validate.Range(0, 86_400, min_inclusive=False))
    max_faces = WholeNumber(
        load_default=None, allow_none=False, validate=validate.Range(1, MAX_FACES_LIMIT)
    )
    min_face_size = WholeNumber(load_default=0, validate=validate.Range(0, 10_000))
    top_k = WholeNumber(load_default=3, validate=validate.Range(1, 100))
    smoothing = fields.Float(load_default=0.0, validate=validate.Range(0, 60))
    min_confidence = Probability(load_default=None, allow_none=False)
    stream = Flag(load_default=False, truthy=TRUE, falsy=FALSE)

    @validates_schema
    def _window(self, data: dict, **kwargs) -> None:
        if data.get("end") is not None and data["end"] <= data.get("start", 0.0):
            raise ValidationError("must be greater than start", "end")


video_options = VideoOptionsSchema()


def parse_video_options(sources: list[dict], default_max_faces: int) -> tuple[VideoOptions, bool]:
    """Validated VideoOptions and whether to stream (NDJSON), from the query string and
    the form (the form wins; each must be valid on its own), or InvalidOptions (422)."""
    data = load_sources(video_options, sources)
    if data["max_faces"] is None:
        data["max_faces"] = default_max_faces
    stream = data.pop("stream")
    return VideoOptions(**data), stream
