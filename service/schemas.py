"""Request option schemas (marshmallow), instantiated once."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from service.errors import InvalidOptions
from service.pipeline import Options

MAX_FACES_LIMIT = 100
# Booleans as OpenAPI serialises them in query strings and forms: "true" / "false" only,
# so a typo such as detect=flase is an error rather than a silent default.
TRUE, FALSE = {True, "true", "True"}, {False, "false", "False"}


class PredictOptionsSchema(Schema):
    """Options of /predict and /predict/batch, from the query string, form or JSON body."""

    class Meta:
        unknown = RAISE

    max_faces = fields.Integer(load_default=None, validate=validate.Range(1, MAX_FACES_LIMIT))
    min_face_size = fields.Integer(load_default=0, validate=validate.Range(0, 10_000))
    detect = fields.Boolean(load_default=True, truthy=TRUE, falsy=FALSE)
    top_k = fields.Integer(load_default=3, validate=validate.Range(1, 100))
    annotate = fields.Boolean(load_default=False, truthy=TRUE, falsy=FALSE)


predict_options = PredictOptionsSchema()


def parse_options(sources: list[dict], default_max_faces: int) -> Options:
    """Validated Options from the query string and the body (the body wins where both set
    an option; each must be valid on its own), or InvalidOptions (422) naming the fields."""
    errors: dict = {}
    for raw in sources:
        try:
            predict_options.load(raw)
        except ValidationError as e:
            errors.update(e.normalized_messages())
    if errors:
        raise InvalidOptions("invalid options", fields=errors)
    merged: dict = {}
    for raw in sources:
        merged.update(raw)
    data = predict_options.load(merged)
    if data["max_faces"] is None:
        data["max_faces"] = default_max_faces
    return Options(**data)
