"""openapi.yaml checked against the response types, with no app running.

Generated analyses (any number of faces, whole image or not, any probabilities, any top_k,
any timings, annotated or not), serialised as /predict, /predict/batch and /predict/video
answer them, must match the spec's 200 responses and carry no property it does not
declare; every property it declares must be produced by some value; and the answers keep
what openapi.yaml and docs/api.md promise: `emotion` is the first of `top` and the most
probable, `confidence` is its probability, probabilities are rounded to 4 decimals, the
total time is the rounded sum of the stages, boxes are integers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from openapi_core.testing import MockRequest, MockResponse

from service.analyzer import FaceResult, ImageAnalysis
from service.api import serialize
from service.detection import Face
from service.errors import BadImage, NotReady, UnsupportedMediaType
from service.imaging import ImageTooLarge
from service.video import results
from service.video.analysis import Frame, TrackSummary, VideoInfo, VideoOptions
from tests.conftest import CLASSES
from tests.service.conftest import EXAMPLES, SPEC

IMAGE_STAGES = ("decode", "detect", "crop", "classify")  # ImageAnalysis.seconds
TEXT = st.text(max_size=12)
SIDES = st.integers(1, 100_000)
TIMES = st.floats(0, 100_000)  # s into a video
TOP_K = st.one_of(st.integers(1, len(CLASSES)), st.integers(1, 100))  # the spec allows 100
SCORES = st.floats(0, 1).map(lambda s: round(s, 4))  # as service.detection gives them


# ---------------------------------------------------------------- the values


@st.composite
def probabilities(draw) -> np.ndarray:
    """A model's output: float32, summing to 1, with ties and zeros as likely as not."""
    weight = st.one_of(st.just(0.0), st.integers(1, 3).map(float), st.floats(1e-6, 1))
    w = np.array(draw(st.lists(weight, min_size=len(CLASSES), max_size=len(CLASSES))))
    if not w.sum():
        w[draw(st.integers(0, len(CLASSES) - 1))] = 1.0
    return (w / w.sum()).astype(np.float32)


def stage_times(stages: tuple[str, ...]) -> st.SearchStrategy[dict[str, float]]:
    return st.fixed_dictionaries({s: st.floats(0, 1_000) for s in stages})


@st.composite
def detected(draw, width: int, height: int) -> Face:
    """A face as a detector gives it: clipped to the image, at least a pixel each way."""
    x, y = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
    w, h = draw(st.integers(1, width - x)), draw(st.integers(1, height - y))
    return Face(x, y, w, h, draw(SCORES))


@st.composite
def analyses(draw) -> ImageAnalysis:
    """What Analyzer.analyze can give for one upload."""
    width, height = draw(SIDES), draw(SIDES)
    # A large JPEG decodes at 1/2 to 1/8: faces are found in its pixels, boxes scaled up.
    shrink = draw(st.sampled_from([1, 2, 4, 8]))
    decoded = math.ceil(width / shrink), math.ceil(height / shrink)
    whole = draw(st.booleans())
    found = [Face(0, 0, *decoded, 1.0)] if whole else draw(st.lists(detected(*decoded), max_size=6))
    found.sort(key=lambda f: f.area, reverse=True)
    return ImageAnalysis(
        width=width,
        height=height,
        model_name=draw(TEXT),
        model_version=draw(TEXT),
        labels=list(CLASSES),
        detector="none" if whole else draw(st.sampled_from(["yunet", "blazeface"])),
        whole_image=whole,
        faces_detected=0 if whole else len(found) + draw(st.integers(0, 100)),
        faces=[FaceResult.of(f, draw(probabilities()), width / decoded[0], whole) for f in found],
        seconds=draw(stage_times(IMAGE_STAGES)),
        annotated_jpeg=draw(st.none() | st.binary(min_size=1, max_size=64)),
        uncertain_below=draw(st.none() | st.floats(0, 1)),
        calibrated=draw(st.booleans()),
    )


# What Analyzer.analyze raises for one image of a batch (the others are still analysed).
batch_errors = st.builds(
    lambda cls, message: cls(message),
    st.sampled_from([BadImage, ImageTooLarge, UnsupportedMediaType, NotReady]),
    TEXT,
)
batches = st.lists(st.tuples(TEXT, analyses() | batch_errors), min_size=1, max_size=4)


@st.composite
def frames(draw, width: int, height: int, smoothing: bool) -> Frame:
    """One analysed frame as VideoAnalysis.frames yields it."""
    faces = draw(st.lists(detected(width, height), max_size=4))
    n = len(faces)
    ids = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))

    def per_face() -> np.ndarray:
        return np.array([draw(probabilities()) for _ in faces]).reshape(n, len(CLASSES))

    index, t, probs = draw(st.integers(0, 10**6)), draw(TIMES), per_face()
    smoothed = per_face() if smoothing else None
    return Frame(index, t, faces, ids, probs, smoothed, draw(stage_times(results.STAGES)))


@st.composite
def tracks(draw, track_id: int) -> TrackSummary:
    """A track summed up as VideoAnalysis does: frames added in time order, some missed."""
    span, t = draw(st.floats(1 / 30, 10)), draw(TIMES)
    track = TrackSummary(track_id, t, t)
    for _ in range(draw(st.integers(1, 6))):
        label, unsure = draw(st.integers(0, len(CLASSES) - 1)), draw(st.none() | st.booleans())
        track.add(t, span, draw(probabilities()), label, unsure)
        t += span * draw(st.integers(1, 4))  # 2 or more: frames missed
    return track


@dataclass
class Video:
    """What service.video.results reads of a VideoAnalysis (which needs a video file)."""

    info: VideoInfo
    start: float
    end: float | None
    opts: VideoOptions
    model: SimpleNamespace
    analyzer: SimpleNamespace
    truncated: bool
    summaries: list[TrackSummary]
    below: float | None  # the uncertain threshold

    def tracks(self) -> list[TrackSummary]:
        return self.summaries


@st.composite
def videos(draw) -> tuple[Video, list[Frame]]:
    """An analysis of a video and the frames it yielded."""
    rate, count = draw(st.none() | st.floats(0.1, 1000)), draw(st.none() | st.integers(1, 10**6))
    size = draw(st.integers(1, 8000)), draw(st.integers(1, 5000))
    info = VideoInfo(*size, rate, count, count / rate if count and rate else None)
    smoothing = draw(st.just(0.0) | st.floats(0.01, 60))
    opts = VideoOptions(fps=draw(st.floats(0.1, 30)), smoothing=smoothing, top_k=draw(TOP_K))
    start = draw(TIMES)
    end = draw(st.none() | st.floats(0.001, 120).map(lambda d: start + d))
    ids = draw(st.lists(st.integers(1, 10_000), max_size=4, unique=True))
    video = Video(
        info,
        start,
        end,
        opts,
        model=SimpleNamespace(
            name=draw(TEXT), version=draw(TEXT), labels=list(CLASSES), calibration=None
        ),
        analyzer=SimpleNamespace(detector=SimpleNamespace(name="yunet")),
        truncated=draw(st.booleans()),
        summaries=[draw(tracks(i)) for i in sorted(ids)],
        below=draw(st.none() | st.floats(0, 1)),
    )
    return video, draw(st.lists(frames(*size, smoothing > 0), max_size=4))


def batch_body(items: list, top_k: int) -> dict:
    """/predict/batch's answer, as service.api.routes builds it."""
    return {
        "results": [
            serialize.batch_item(name, a, top_k)
            if isinstance(a, ImageAnalysis)
            else serialize.batch_error(name, a)
            for name, a in items
        ]
    }


# The answer of each endpoint for any value.
BODIES = {
    "/predict": st.builds(serialize.image, analyses(), TOP_K),
    "/predict/batch": st.builds(batch_body, batches, TOP_K),
    "/predict/video": videos().map(lambda v: results.whole(*v)),
}


# ---------------------------------------------------------------- the spec


def response_schema(path: str):
    """The JSON schema of ``path``'s 200 answer in openapi.yaml, $refs resolved as read."""
    ok = SPEC.spec / "paths" / path / "post" / "responses" / "200"
    return ok / "content" / "application/json" / "schema"


def declared(schema, where: str = "$") -> dict[str, set[str]]:
    """Each object ``schema`` names the properties of, by where it is in an answer
    ("$.faces[].box"): those names (of all its allOf parts)."""
    parts = list(schema / "allOf") if "allOf" in schema else [schema]
    out: dict[str, set[str]] = {}

    def add(found: dict[str, set[str]]) -> None:
        for k, names in found.items():
            out.setdefault(k, set()).update(names)

    for part in parts:
        if "items" in part:
            add(declared(part / "items", where + "[]"))
        for name in (part / "properties").keys() if "properties" in part else ():
            add({where: {name}, **declared(part / "properties" / name, f"{where}.{name}")})
    return out


def keys_at(doc: dict, where: str) -> set[str]:
    """The keys of the objects at ``where`` (as ``declared`` names it) in ``doc``."""
    found: list = [doc]
    for step in where.split(".")[1:]:
        name = step.removesuffix("[]")
        found = [v[name] for v in found if isinstance(v, dict) and name in v]
        if step.endswith("[]"):
            found = [x for v in found for x in v]
    return {k for v in found if isinstance(v, dict) for k in v}


DECLARED = {path: declared(response_schema(path)) for path in BODIES}


def answer(path: str, body: dict) -> dict:
    """``body`` as a client reads it, once checked against ``path``'s 200 answer: valid by
    the spec's schema and with no property the spec does not declare."""
    data = json.dumps(body, allow_nan=False).encode()
    request = MockRequest("http://localhost", "post", path)
    SPEC.validate_response(request, MockResponse(data, content_type="application/json"))
    doc = json.loads(data)
    for where, names in DECLARED[path].items():
        assert keys_at(doc, where) <= names, f"{where}: not in openapi.yaml"
    return doc


# ---------------------------------------------------------------- the promises


def is_rounded(v: float, digits: int) -> bool:
    return round(v, digits) == v


def check_face(face: dict, source: np.ndarray, top_k: int) -> None:
    """One face: the top-k most probable labels, and the model's numbers, rounded."""
    probs, top = face["probabilities"], face["top"]
    assert probs == {k: round(float(p), 4) for k, p in zip(CLASSES, source, strict=True)}
    shown = [t["probability"] for t in top]
    assert len(top) == min(top_k, len(CLASSES))
    assert len({t["emotion"] for t in top}) == len(top)
    assert shown == sorted(shown, reverse=True)
    assert all(probs[t["emotion"]] == t["probability"] for t in top)
    assert all(p <= shown[-1] for k, p in probs.items() if k not in {t["emotion"] for t in top})
    assert face["emotion"] == top[0]["emotion"]
    assert face["confidence"] == top[0]["probability"] == max(probs.values())
    assert all(is_rounded(v, 4) for v in [*probs.values(), *shown, face["confidence"]])
    assert all(type(v) is int for v in face["box"].values())


def check_timings(shown: dict, seconds: dict[str, float]) -> None:
    """Each stage in ms to 0.01, and their total: the rounded sum of the unrounded stages."""
    stages = {k: v for k, v in shown.items() if k != "total"}
    assert set(stages) == set(seconds)
    assert all(is_rounded(v, 2) for v in shown.values())
    assert shown["total"] == round(sum(seconds.values()) * 1000, 2)
    # So the shown stages add up to it, but for their rounding.
    assert math.isclose(sum(stages.values()), shown["total"], abs_tol=0.005 * len(shown) + 1e-6)


def check_image(doc: dict, a: ImageAnalysis, top_k: int) -> None:
    assert (doc["width"], doc["height"], doc["whole_image"]) == (a.width, a.height, a.whole_image)
    assert len(doc["faces"]) == len(a.faces)
    for face, f in zip(doc["faces"], a.faces, strict=True):
        check_face(face, f.probs, top_k)
        assert (face["detector_score"] is None) == a.whole_image
    check_timings(doc["timings_ms"], a.seconds)
    assert base64.b64decode(doc.get("annotated_image", "")) == (a.annotated_jpeg or b"")


@given(a=analyses(), top_k=TOP_K)
@EXAMPLES
def test_predict_answer_matches_openapi(a, top_k):
    check_image(answer("/predict", serialize.image(a, top_k)), a, top_k)


@given(items=batches, top_k=TOP_K)
@EXAMPLES
def test_batch_answer_matches_openapi(items, top_k):
    doc = answer("/predict/batch", batch_body(items, top_k))
    assert [r["filename"] for r in doc["results"]] == [name for name, _ in items]
    for r, (_, a) in zip(doc["results"], items, strict=True):
        assert r["ok"] == isinstance(a, ImageAnalysis)
        if r["ok"]:
            check_image(r["result"], a, top_k)
        else:
            assert (r["status"], r["error"]) == (a.status, {"code": a.code, "message": a.message})


@given(video=videos())
@EXAMPLES
def test_video_answer_matches_openapi(video):
    a, analysed = video
    doc = answer("/predict/video", results.whole(a, analysed))
    assert doc["frames_analysed"] == len(doc["frames"]) == len(analysed)
    for frame, f in zip(doc["frames"], analysed, strict=True):
        assert [face["track_id"] for face in frame["faces"]] == f.track_ids
        for i, face in enumerate(frame["faces"]):
            check_face(face, f.probs[i], a.opts.top_k)
            if f.smoothed is not None:
                check_label(face["smoothed"], "emotion", "probabilities")
    for track in doc["tracks"]:
        check_label(track, "dominant_emotion", "mean_probabilities")
    totals = {s: sum(f.seconds[s] for f in analysed) for s in results.STAGES}
    check_timings(doc["timings_ms"], totals)


def check_label(doc: dict, label: str, probabilities: str) -> None:
    """A smoothed face or a track: its emotion is its most probable label, rounded as /predict."""
    probs = doc[probabilities]
    assert set(probs) == set(CLASSES) and all(is_rounded(v, 4) for v in probs.values())
    assert probs[doc[label]] == max(probs.values())
    assert doc.get("confidence", probs[doc[label]]) == probs[doc[label]]


# ---------------------------------------------------------------- the other way round

# Draw answers until every declared property has been in one; fail when these many do not do it.
SEARCH = settings(max_examples=500, phases=[Phase.generate], database=None, deadline=None)


def never_produced(bodies: st.SearchStrategy[dict], declared: dict[str, set[str]]) -> list[str]:
    """The declared properties (``where.name``) that no answer ``bodies`` draws has."""
    missing = {(where, name) for where, names in declared.items() for name in names}

    def all_seen(body: dict) -> bool:
        missing.difference_update({(w, n) for w, n in missing if n in keys_at(body, w)})
        return not missing

    with contextlib.suppress(NoSuchExample):
        find(bodies, all_seen, settings=SEARCH)
    return sorted(f"{where}.{name}" for where, name in missing)


@pytest.mark.parametrize("path", sorted(BODIES))
def test_every_declared_property_is_produced(path):
    never = never_produced(BODIES[path], DECLARED[path])
    assert not never, f"openapi.yaml declares {never} for {path}; no answer has them"


@given(st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.25, 1 / 7]), min_size=7, max_size=7))
def test_ties_are_ranked_in_label_order(probs):
    from service.analyzer import Box

    face = FaceResult(Box(0, 0, 1, 1), 0.9, np.array(probs, np.float32))
    order = [int(i) for i in face.ranked()]
    # The most probable first; among equal probabilities, the earlier label first (the
    # same answer on every NumPy build and CPU, and /v2's emotion is /predict's).
    assert order == sorted(range(7), key=lambda i: (-np.float32(probs[i]), i))
