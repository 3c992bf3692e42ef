"""Request option schemas (marshmallow), instantiated once."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from service.errors import InvalidOptions
from service.pipeline import Options

MAX_FACES_LIMIT = 100


class PredictOptionsSchema(Schema):
    """Options of /predict and /predict/batch, from the query string, form or JSON body."""

    class Meta:
        unknown = RAISE

    max_faces = fields.Integer(load_default=None, validate=validate.Range(1, MAX_FACES_LIMIT))
    min_face_size = fields.Integer(load_default=0, validate=validate.Range(0, 10_000))
    detect = fields.Boolean(load_default=True)
    top_k = fields.Integer(load_default=3, validate=validate.Range(1, 100))
    annotate = fields.Boolean(load_default=False)


predict_options = PredictOptionsSchema()


def parse_options(raw: dict, default_max_faces: int) -> Options:
    """Validated Options, or InvalidOptions (422) with a field -> messages map."""
    try:
        data = predict_options.load(raw)
    except ValidationError as e:
        raise InvalidOptions("invalid options", fields=e.normalized_messages()) from None
    if data["max_faces"] is None:
        data["max_faces"] = default_max_faces
    return Options(**data)
