"""Request option schemas (marshmallow), instantiated once, and the option types they share
with /predict/video's (service/video/options.py)."""

from __future__ import annotations

import math
import re

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from service.analyzer import Options
from service.errors import InvalidOptions

MAX_FACES_LIMIT = 100
# Booleans as OpenAPI serialises them in query strings and forms: "true" / "false" only,
# so a typo such as detect=flase is an error rather than a silent default.
TRUE, FALSE = {True, "true", "True"}, {False, "false", "False"}


_DIGITS = re.compile(r"[+-]?[0-9]{1,100}")


class WholeNumber(fields.Integer):
    """An integer option: a JSON integer (or a number with no fraction, such as 2.0) or
    ASCII digits in a query string or form. marshmallow's Integer would truncate 1.5 to
    1 and read a boolean or fullwidth digits as a number; a user who sent those meant
    something else and should be told."""

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, str) and not _DIGITS.fullmatch(value.strip()):
            raise self.make_error("invalid")
        if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
            raise self.make_error("invalid")
        return super()._validated(value)


class Flag(fields.Boolean):
    """A boolean option: JSON true/false or "true"/"false". Numbers are refused (marshmallow
    would take 1 and 0.0 for booleans, since 1 == True in Python's sets)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class Probability(fields.Float):
    """A threshold on a probability: a number in [0, 1] (a JSON number or the text of one),
    never a boolean, NaN or infinity."""

    def __init__(self, **kwargs):
        super().__init__(allow_nan=False, validate=validate.Range(0, 1), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class PredictOptionsSchema(Schema):
    """Options of /predict and /predict/batch, from the query string, form or JSON body."""

    class Meta:
        unknown = RAISE

    max_faces = WholeNumber(
        load_default=None, allow_none=False, validate=validate.Range(1, MAX_FACES_LIMIT)
    )
    min_face_size = WholeNumber(load_default=0, validate=validate.Range(0, 10_000))
    detect = Flag(load_default=True, truthy=TRUE, falsy=FALSE)
    top_k = WholeNumber(load_default=3, validate=validate.Range(1, 100))
    annotate = Flag(load_default=False, truthy=TRUE, falsy=FALSE)
    min_confidence = Probability(load_default=None, allow_none=False)


predict_options = PredictOptionsSchema()


def parse_options(sources: list[dict], default_max_faces: int) -> Options:
    """Validated Options from the query string and the body (the body wins where both set
    an option; each must be valid on its own), or InvalidOptions (422) naming the fields."""
    data = load_sources(predict_options, sources)
    if data["max_faces"] is None:
        data["max_faces"] = default_max_faces
    return Options(**data)


def load_sources(schema: Schema, sources: list[dict]) -> dict:
    """Each source must be valid on its own (one 422 names the bad fields of all of them);
    then they are merged, later sources winning."""
    errors: dict = {}
    for raw in sources:
        try:
            schema.load(raw)
        except ValidationError as e:
            errors.update(e.normalized_messages())
    if errors:
        raise InvalidOptions("invalid options", fields=errors)
    try:
        # Valid alone, sources can still clash once merged (start in the query past an
        # end in the form): a 422 as well, not a ValidationError reaching the 500 handler.
        return schema.load({k: v for raw in sources for k, v in raw.items()})
    except ValidationError as e:
        raise InvalidOptions("invalid options", fields=e.normalized_messages()) from None
