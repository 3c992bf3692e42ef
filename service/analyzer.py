"""Detect, crop and classify every face of one image: the service's domain function.

``Analyzer.analyze`` answers one upload with an ``ImageAnalysis``: typed, unrounded, boxes
in the upload's pixels (service.api.serialize turns it into JSON). ``Analyzer.classify`` does
the same for an already decoded image and gives the boxes in its pixels (video frames).
``Analyzer.from_settings`` wires the one the app, the benchmarks and the video CLI use.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from service import cropping
from service.config import Settings
from service.detection import Detector, Face, make_detector
from service.imaging import Decoded, decode
from service.model.batching import Batcher, Unbatched
from service.model.calibration import uncertain
from service.model.classifier import Classifier
from service.model.registry import ModelSlot

# An upload this small and nearly square with no detected face is most likely a face
# crop already (like the training data): classify it whole rather than drop it.
CROP_MAX_SIDE = 256
CROP_ASPECT = (0.75, 1.33)


@dataclass(frozen=True)
class Options:
    """Per-request choices (validated by service.api.schemas)."""

    max_faces: int = 20
    min_face_size: int = 0
    detect: bool = True
    top_k: int = 3
    annotate: bool = False
    # A face whose top probability is lower is flagged uncertain; None: the version's
    # threshold (its calibration), if it has one.
    min_confidence: float | None = None
    # No face found in a small, squarish image: classify it whole (an upload that is a face
    # crop). Off for video frames, where it would make a face of an empty scene.
    whole_if_no_face: bool = True


@dataclass(frozen=True)
class Found:
    """One image's classified faces, boxes in the pixels of the image as decoded."""

    faces: list[Face]  # largest first, at most max_faces
    probs: np.ndarray  # [faces, labels]
    whole: bool  # the whole image was classified as one face
    detected: int  # faces found before max_faces applied
    seconds: dict[str, float]  # [decode,] detect, crop, classify


@dataclass(frozen=True)
class Box:
    """A face's box in the upload's pixels (the image may have been decoded smaller)."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class FaceResult:
    """One classified face."""

    box: Box
    score: float | None  # the detector's; None when the whole image was classified
    probs: np.ndarray  # one per label, as the model gave them

    @classmethod
    def of(
        cls, face: Face, probs: np.ndarray, scale: float = 1.0, whole: bool = False
    ) -> FaceResult:
        """``face`` (in decoded pixels) with ``scale`` upload pixels per decoded pixel."""
        box = Box(*(round(v * scale) for v in (face.x, face.y, face.width, face.height)))
        return cls(box, None if whole else face.score, probs)

    @property
    def confidence(self) -> float:
        """The top probability."""
        return float(self.probs.max())

    def ranked(self) -> np.ndarray:
        """Label indices, the most probable first; tied labels in label order (a stable
        sort: the default one may put the later of two tied labels first)."""
        return np.argsort(-self.probs, kind="stable")


@dataclass(frozen=True)
class ImageAnalysis:
    """One upload analysed: everything /predict answers, before rounding."""

    width: int  # the upload's
    height: int
    model_name: str
    model_version: str
    labels: list[str]  # the order of each face's probabilities
    detector: str  # "none" when the whole image was classified
    whole_image: bool
    faces_detected: int  # before max_faces; 0 when the whole image was classified
    faces: list[FaceResult]  # largest first
    seconds: dict[str, float]  # decode, detect, crop, classify
    annotated_jpeg: bytes | None = None  # the image with boxes and labels, when asked
    uncertain_below: float | None = None  # the threshold in effect (None: none)
    calibrated: bool = False  # the probabilities went through the version's calibration

    @property
    def emotions(self) -> list[str]:
        """Each face's most probable label."""
        return [self.labels[int(f.ranked()[0])] for f in self.faces]

    @property
    def uncertain(self) -> list[bool | None]:
        """Each face's flag: its top probability under the threshold (None: no threshold)."""
        return [uncertain(f.confidence, self.uncertain_below) for f in self.faces]


def threshold(opts_min: float | None, model: Classifier) -> float | None:
    """The uncertain threshold of a request: its own, else the served calibration's."""
    if opts_min is not None:
        return opts_min
    return model.calibration.uncertain_below if model.calibration is not None else None


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

    @classmethod
    def from_settings(
        cls, settings: Settings, models: ModelSlot | None = None, detector: Detector | None = None
    ) -> Analyzer:
        """The analyzer ``settings`` describe; tests pass their own slot or detector.

        The slot it makes is empty: the caller loads it (``check``) or starts it.
        """
        detector = detector or make_detector(
            settings.detector,
            settings.yunet_model,
            settings.detector_score,
            settings.detect_max_side,
            settings.threads_per_worker(),
            settings.precision,
        )
        models = models or ModelSlot.from_settings(settings)
        batcher = (
            Batcher(settings.batch_max_faces, settings.batch_wait_ms) if settings.batch else None
        )
        return cls(models, detector, settings.max_pixels, batcher, settings.decode_max_side)

    def analyze(self, data: bytes, opts: Options, model: Classifier | None = None) -> ImageAnalysis:
        """Decode, detect, crop and classify one upload, with ``model`` or the live one."""
        # One model for the whole request, even if a new version goes live meanwhile.
        model = model or self.models.current()
        with self.batcher.ticket() if self.batcher else Unbatched() as ticket:
            t0 = time.perf_counter()
            img = decode(data, self.max_pixels, self.decode_max_side)
            decoded = time.perf_counter()
            found = self._classify(model, img, opts, ticket)
        faces = [
            FaceResult.of(f, p, img.scale, found.whole)
            for f, p in zip(found.faces, found.probs, strict=True)
        ]
        below = threshold(opts.min_confidence, model)
        return ImageAnalysis(
            width=img.original_width,
            height=img.original_height,
            model_name=model.name,
            model_version=model.version,
            labels=model.labels,
            detector="none" if found.whole else self.detector.name,
            whole_image=found.whole,
            faces_detected=0 if found.whole else found.detected,
            faces=faces,
            seconds={"decode": decoded - t0, **found.seconds},
            annotated_jpeg=annotate(img, faces, model.labels, below) if opts.annotate else None,
            uncertain_below=below,
            calibrated=model.calibration is not None,
        )

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
        contract = model.contract
        size = contract.input_size
        if not found:
            return np.zeros((0, size, size, 3), np.uint8)
        if whole:  # exactly the trainer's handling of a dataset image: resize it all
            return cropping.to_input(img.gray, size, contract.preprocessing)[None]
        return cropping.batch(img.gray, found, contract)


def annotate(
    img: Decoded, faces: list[FaceResult], labels: list[str], below: float | None = None
) -> bytes:
    """A JPEG of the decoded image with each face's box and label (as /predict rounds them);
    an uncertain face (top probability under ``below``) in amber, with "?" after its label."""
    canvas = cv2.cvtColor(img.rgb, cv2.COLOR_RGB2BGR)
    thick = max(1, round(max(img.rgb.shape[:2]) / 400))
    for f in faces:
        # The upload's box back in the decoded image's pixels.
        x, y, w, h = (round(v / img.scale) for v in (f.box.x, f.box.y, f.box.width, f.box.height))
        unsure = uncertain(f.confidence, below)
        color = (0, 160, 240) if unsure else (0, 200, 0)  # BGR: amber, green
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, thick)
        top = int(f.ranked()[0])
        # The confidence as /predict answers it (4 decimals), then shown with 2.
        text = f"{labels[top]}{'?' if unsure else ''} {round(float(f.probs[top]), 4):.2f}"
        cv2.putText(
            canvas,
            text,
            (x, max(12, y - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thick,
            color,
            thick,
        )
    buf = io.BytesIO()
    Image.fromarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)).save(buf, "JPEG", quality=85)
    return buf.getvalue()
