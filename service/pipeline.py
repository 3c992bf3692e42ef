"""Detect, crop and classify every face of one image: the service's domain function."""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PIL import Image

from service import cropping
from service.batching import Batcher, Unbatched
from service.detection import Detector, Face
from service.imaging import Decoded, decode
from service.model import Classifier
from service.registry import ModelSlot

# An upload this small and nearly square with no detected face is most likely a face
# crop already (like the training data): classify it whole rather than drop it.
CROP_MAX_SIDE = 256
CROP_ASPECT = (0.75, 1.33)


@dataclass(frozen=True)
class Options:
    """Per-request choices (validated by service.schemas)."""

    max_faces: int = 20
    min_face_size: int = 0
    detect: bool = True
    top_k: int = 3
    annotate: bool = False
    # No face found in a small, squarish image: classify it whole (an upload that is a face
    # crop). Off for video frames, where it would make a face of an empty scene.
    whole_if_no_face: bool = True


@dataclass(frozen=True)
class Found:
    """One image's classified faces before serialisation (boxes in decoded pixels)."""

    faces: list[Face]  # largest first, at most max_faces
    probs: np.ndarray  # [faces, labels]
    whole: bool  # the whole image was classified as one face
    detected: int  # faces found before max_faces applied
    seconds: dict[str, float]  # [decode,] detect, crop, classify


def _looks_like_crop(img: Decoded) -> bool:
    ratio = img.width / img.height
    return max(img.width, img.height) <= CROP_MAX_SIDE and CROP_ASPECT[0] <= ratio <= CROP_ASPECT[1]


class Analyzer:
    """Runs the whole pipeline with the live model and a detector; thread-safe."""

    def __init__(
        self,
        models: ModelSlot,
        detector: Detector,
        max_pixels: int,
        batcher: Batcher | None = None,
        decode_max_side: int = 0,
    ):
        self.models, self.detector, self.max_pixels = models, detector, max_pixels
        self.batcher, self.decode_max_side = batcher, decode_max_side

    def analyze(self, data: bytes, opts: Options) -> dict:
        """One upload, answered as /predict answers it."""
        # One model for the whole request, even if a new version goes live meanwhile.
        model = self.models.current()
        img, found = self.run(data, opts, model)
        return self.result(model, img, found, opts)

    def run(self, data: bytes, opts: Options, model: Classifier) -> tuple[Decoded, Found]:
        """Decode, detect, crop and classify one upload: the typed result (exact
        probabilities, boxes in decoded pixels), for callers that answer in another shape."""
        with self.batcher.ticket() if self.batcher else Unbatched() as ticket:
            t0 = time.perf_counter()
            img = decode(data, self.max_pixels, self.decode_max_side)
            decoded = time.perf_counter()
            found = self._classify(model, img, opts, ticket)
        return img, replace(found, seconds={"decode": decoded - t0, **found.seconds})

    def classify(self, img: Decoded, opts: Options, model: Classifier) -> Found:
        """Detect, crop and classify the faces of an already decoded image (a video frame)."""
        with self.batcher.ticket() if self.batcher else Unbatched() as ticket:
            return self._classify(model, img, opts, ticket)

    def _classify(self, model: Classifier, img: Decoded, opts: Options, ticket) -> Found:
        t = {"detect": time.perf_counter()}
        found, whole = self._find(img, opts)
        t["crop"] = time.perf_counter()
        faces = found[: opts.max_faces]
        batch = self._batch(model, img, faces, whole)
        t["classify"] = time.perf_counter()
        probs = ticket.predict(model, batch) if len(batch) else np.zeros((0, len(model.labels)))
        t["end"] = time.perf_counter()
        stages = list(t)
        seconds = {s: t[n] - t[s] for s, n in zip(stages, stages[1:], strict=False)}
        return Found(faces, probs, whole, len(found), seconds)

    def _find(self, img: Decoded, opts: Options) -> tuple[list[Face], bool]:
        whole = [Face(0, 0, img.width, img.height, 1.0)]
        if not opts.detect:
            return whole, True
        found = [
            f
            for f in self.detector.detect(img.rgb)
            if min(f.width, f.height) * img.scale >= opts.min_face_size  # upload's pixels
        ]
        if not found and opts.whole_if_no_face and _looks_like_crop(img):
            return whole, True
        return sorted(found, key=lambda f: f.area, reverse=True), False

    def _batch(self, model: Classifier, img: Decoded, found: list[Face], whole: bool) -> np.ndarray:
        size = model.input_size
        if not found:
            return np.zeros((0, size, size, 3), np.uint8)
        if whole:  # exactly the trainer's handling of a dataset image: resize it all
            return cropping.to_input(img.gray, size, model.metadata.get("preprocessing", {}))[None]
        return cropping.batch(img.gray, found, model.metadata, size)

    def result(self, model: Classifier, img: Decoded, found: Found, opts: Options) -> dict:
        """The JSON answer of /predict for one analysed upload."""
        whole = found.whole
        entries = [
            face_entry(f, p, model.labels, opts.top_k, img.scale, whole)
            for f, p in zip(found.faces, found.probs, strict=True)
        ]
        out: dict = {
            "width": img.original_width,
            "height": img.original_height,
            "model": {"name": model.name, "version": model.version},
            "detector": "none" if whole else self.detector.name,
            "whole_image": whole,
            "faces_detected": 0 if whole else found.detected,
            "faces": entries,
        }
        if opts.annotate:
            out["annotated_image"] = annotate(img.rgb, entries, img.scale)
        timings = {s: round(v * 1000, 2) for s, v in found.seconds.items()}
        timings["total"] = round(sum(found.seconds.values()) * 1000, 2)
        out["timings_ms"] = timings
        return out


def face_entry(
    f: Face, p: np.ndarray, labels: list[str], top_k: int, scale: float, whole: bool = False
) -> dict:
    """One face as the API returns it; ``scale`` maps decoded pixels to the upload's."""
    order = np.argsort(-p)[:top_k]
    return {
        "box": box_dict(f, scale),
        "detector_score": None if whole else f.score,
        "emotion": labels[int(order[0])],
        "confidence": round(float(p[order[0]]), 4),
        "top": [{"emotion": labels[int(i)], "probability": round(float(p[i]), 4)} for i in order],
        "probabilities": {k: round(float(v), 4) for k, v in zip(labels, p, strict=True)},
    }


def box_dict(f: Face, scale: float = 1.0) -> dict:
    """A face's box in the upload's pixels (the image may have been decoded smaller)."""
    return {
        "x": round(f.x * scale),
        "y": round(f.y * scale),
        "width": round(f.width * scale),
        "height": round(f.height * scale),
    }


def annotate(rgb: np.ndarray, entries: list[dict], scale: float = 1.0) -> str:
    """A JPEG of the (decoded) image with each face's box and label, base64-encoded;
    ``scale`` maps the entries' upload coordinates to the decoded image's."""
    canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thick = max(1, round(max(rgb.shape[:2]) / 400))
    for e in entries:
        b = {k: round(v / scale) for k, v in e["box"].items()}
        p1, p2 = (b["x"], b["y"]), (b["x"] + b["width"], b["y"] + b["height"])
        cv2.rectangle(canvas, p1, p2, (0, 200, 0), thick)
        text = f"{e['emotion']} {e['confidence']:.2f}"
        cv2.putText(
            canvas,
            text,
            (b["x"], max(12, b["y"] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thick,
            (0, 200, 0),
            thick,
        )
    buf = io.BytesIO()
    Image.fromarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)).save(buf, "JPEG", quality=85)
    return base64.b64encode(buf.getvalue()).decode("ascii")
