"""An ONNX expression model from outside FER2013 as a teacher: faces aligned on YuNet's
five landmarks, the model run by OpenVINO, probabilities cached per image.

The teacher we have is OpenCV Zoo's MobileFaceNet trained on RAF-DB (in-the-wild photos;
``../shared/pretrained/README``): zero-shot it is 72.5% on FER+ PrivateTest where our
versions are 87%, but it reads posed anger, disgust and fear that ours call neutral (#32).
Its convention, which this module follows for any ONNX teacher:

* the face aligned by a 5-point similarity transform (``cv2.estimateAffinePartial2D``) of
  YuNet's landmarks (right eye, left eye, nose tip, right and left mouth corner) onto the
  ArcFace template, scaled to the model's input size (112 px for the template's numbers);
* RGB, ``(x / 255 - 0.5) / 0.5``, NCHW; out, one logit per class in our label order.

A FER2013 face is 48 px (96 px as the student gets it), too small for YuNet: it is
enlarged to 192 px first, where YuNet finds about 99% of them. Where it finds none, the
median landmarks of the faces it found stand in (FER2013's crops are roughly aligned
already). The mirror's answer is the model's on the aligned crop mirrored (the template
is symmetric to within a quarter of a pixel), one detection per image. Detecting and
aligning the mirrored image instead gives answers as far from it as from the unmirrored
one (on 120 PublicTest faces, the same top class 80% of the time against 78%): the
model is that sensitive to YuNet's landmark jitter, which the average over both smooths.

Its outputs depend only on the image, so they are cached by the pixel hash of the decoded
image (``trainer.data.images.pixel_hash``): the 31,327 FER+ images x 7 probabilities x (image,
mirror), with their hashes, are 1.2 MB in float16, small enough to keep in git between
sessions, so that a session does not pay the pass (4 minutes on 2 cores) again.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from trainer.errors import TrainerError

# ArcFace's 112 x 112 template: right eye, left eye, nose tip, right and left mouth corner.
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
     [70.7299, 92.2041]],
    np.float32,
)  # fmt: skip
DETECT_SIZE = 192  # YuNet finds ~99% of FER2013's faces here, few at 48 or 96 px
DETECT_SCORE = 0.5  # a face is known to be there: take YuNet's best guess
BATCH = 64


def is_onnx_teacher(path: str) -> bool:
    """An ONNX file (this module) rather than an exported version (a SavedModel folder)."""
    return str(path).lower().endswith(".onnx")


def yunet_for(teacher: str, yunet: str = "") -> Path:
    """The YuNet file that aligns ``teacher``'s faces: ``yunet``, else the one beside it."""
    if yunet:
        found = [Path(yunet)] if Path(yunet).is_file() else []
    else:
        found = sorted(Path(teacher).parent.glob("face_detection_yunet*.onnx"))
    if not found:
        where = yunet or f"beside {teacher}"
        raise TrainerError(
            f"--teacher {teacher} aligns faces on YuNet's landmarks: no YuNet model {where} "
            f"(give --yunet PATH)"
        )
    return found[-1]


@dataclass
class FaceTeacherOutputs:
    probs: np.ndarray  # [N, classes] float32, the image
    mirrored: np.ndarray  # [N, classes] float32, its mirror
    found: np.ndarray  # [N] bool: YuNet found the face (else the median landmarks)


class AlignedFaceTeacher:
    """The ONNX model compiled by OpenVINO and YuNet (OpenCV), for uint8 RGB faces."""

    def __init__(self, model: Path, yunet: Path, classes: int):
        import openvino as ov

        for what, path in (("--teacher", model), ("--yunet", yunet)):
            if not Path(path).is_file():
                raise TrainerError(f"{what} {path}: no such file")
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
        core = ov.Core()
        try:
            net = core.read_model(str(model))
            shape = net.inputs[0].get_partial_shape()
            self.size = int(shape[2].get_length())
            net.reshape({net.inputs[0].get_any_name(): [BATCH, 3, self.size, self.size]})
            self._compiled = core.compile_model(net, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
        except Exception as e:  # OpenVINO's own errors
            raise TrainerError(f"--teacher {model}: OpenVINO cannot run it ({e})") from e
        self._request = self._compiled.create_infer_request()
        self.template = TEMPLATE * (self.size / 112.0)
        self._yunet = cv2.FaceDetectorYN.create(
            str(yunet), "", (DETECT_SIZE, DETECT_SIZE), DETECT_SCORE, 0.3, 10
        )
        self.classes = classes
        out = self._logits(np.zeros((1, self.size, self.size, 3), np.uint8))
        if out.shape != (1, classes):
            raise TrainerError(
                f"--teacher {model}: returns {out.shape[1:]} values per face, not {classes} "
                f"logits in the data's class order"
            )

    def landmarks(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """YuNet's five landmarks of each image's best face, in DETECT_SIZE pixels, and
        whether one was found (the median of the found ones stands in elsewhere)."""
        points = np.zeros((len(images), 5, 2), np.float32)
        found = np.zeros(len(images), bool)
        for i, rgb in enumerate(images):
            big = cv2.resize(rgb, (DETECT_SIZE, DETECT_SIZE), interpolation=cv2.INTER_LINEAR)
            _, faces = self._yunet.detect(cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
            if faces is not None and len(faces):
                best = faces[int(np.argmax(faces[:, 14]))]
                points[i], found[i] = best[4:14].reshape(5, 2), True
        if found.any():
            points[~found] = np.median(points[found], axis=0)
        else:
            points[:] = self.template * (DETECT_SIZE / self.size)  # the whole image is a face
        return points, found

    def aligned(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The face warped onto the template at the model's size (uint8 RGB)."""
        big = cv2.resize(image, (DETECT_SIZE, DETECT_SIZE), interpolation=cv2.INTER_LINEAR)
        m, _ = cv2.estimateAffinePartial2D(points, self.template, method=cv2.LMEDS)
        if m is None:  # degenerate landmarks: fall back to a plain resize
            return cv2.resize(big, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return cv2.warpAffine(big, m, (self.size, self.size), borderMode=cv2.BORDER_REPLICATE)

    def _logits(self, faces: np.ndarray) -> np.ndarray:
        out = np.zeros((len(faces), self.classes), np.float32)
        for start in range(0, len(faces), BATCH):
            chunk = faces[start : start + BATCH]
            x = np.zeros((BATCH, 3, self.size, self.size), np.float32)
            x[: len(chunk)] = (chunk.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - 0.5) / 0.5
            self._request.infer([x])
            out[start : start + len(chunk)] = self._request.get_output_tensor(0).data[: len(chunk)]
        return out

    def predict(self, images: np.ndarray) -> FaceTeacherOutputs:
        """Probabilities for uint8 RGB faces [N, H, W, 3] and for their mirrors."""
        points, found = self.landmarks(images)
        faces = np.stack([self.aligned(im, p) for im, p in zip(images, points, strict=True)])
        return FaceTeacherOutputs(
            _softmax(self._logits(faces)), _softmax(self._logits(faces[:, :, ::-1])), found
        )


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def cache_path(cache_dir: Path, model: Path) -> Path:
    """One cache file per teacher file (by name and content) in ``cache_dir``."""
    return Path(cache_dir) / f"{Path(model).stem}-{file_digest(model)}.npz"


class CachedFaceTeacher:
    """The teacher's outputs by pixel hash: read from ``cache_dir``'s file once, computed
    where missing by one teacher compiled on first need, written back by ``save``."""

    def __init__(self, model: Path, yunet: Path, cache_dir: Path | None, classes: int):
        self.model, self.yunet, self.classes = model, yunet, classes
        self.cache = cache_path(cache_dir, model) if cache_dir else None
        self.known = read_cache(self.cache) if self.cache and self.cache.is_file() else {}
        self._teacher: AlignedFaceTeacher | None = None
        self._added = False

    def outputs(self, images: np.ndarray, hashes: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
        """The probabilities for ``images`` and their mirrors, from the cache where it
        holds them, computed and added to it where not.

        Returns:
            (probs, mirrored, info): ``info`` says how many came from the cache, were
            computed, were found by YuNet, and the seconds the computed ones took.
        """
        missing = [i for i, h in enumerate(hashes) if h not in self.known]
        info = {"cached": len(hashes) - len(missing), "computed": len(missing), "seconds": 0.0}
        if missing:
            t0 = time.monotonic()
            if self._teacher is None:
                self._teacher = AlignedFaceTeacher(self.model, self.yunet, self.classes)
            out = self._teacher.predict(images[missing])
            info["seconds"] = round(time.monotonic() - t0, 1)
            for j, i in enumerate(missing):
                self.known[hashes[i]] = (out.probs[j], out.mirrored[j], bool(out.found[j]))
            self._added = True
        rows = [self.known[h] for h in hashes]
        probs = np.stack([r[0] for r in rows]).astype(np.float32)
        mirrored = np.stack([r[1] for r in rows]).astype(np.float32)
        info["found_by_yunet"] = int(sum(r[2] for r in rows))
        return _renorm(probs), _renorm(mirrored), info

    def save(self) -> None:
        """Write the cache back if anything was computed since it was read."""
        if self.cache and self._added:
            write_cache(self.cache, self.known)
            self._added = False


def teacher_outputs(
    model: Path,
    yunet: Path,
    images: np.ndarray,
    hashes: list[str],
    cache_dir: Path | None,
    classes: int,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``CachedFaceTeacher.outputs`` for one set of images, the cache saved after."""
    teacher = CachedFaceTeacher(model, yunet, cache_dir, classes)
    result = teacher.outputs(images, hashes)
    teacher.save()
    return result


def _renorm(p: np.ndarray) -> np.ndarray:
    # Stored in float16: rows sum to 1 within 1e-3; make them exact again.
    return p / p.sum(axis=1, keepdims=True)


def read_cache(cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    try:
        with np.load(cache, allow_pickle=False) as f:
            hashes, probs, mirrored, found = f["hashes"], f["probs"], f["mirrored"], f["found"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise TrainerError(f"{cache} is not a readable teacher cache ({e}); delete it") from e
    return {str(h): (probs[i], mirrored[i], bool(found[i])) for i, h in enumerate(hashes.tolist())}


def write_cache(cache: Path, known: dict[str, tuple[np.ndarray, np.ndarray, bool]]) -> None:
    # Sorted by hash, so that the same images give the same bytes (a stable git diff).
    # Written whole under another name, then renamed: no half cache after a kill.
    cache.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(known)
    tmp = cache.with_name(f".{cache.name}.tmp")
    with tmp.open("wb") as f:
        np.savez_compressed(
            f,
            hashes=np.array(keys),
            probs=np.stack([known[k][0] for k in keys]).astype(np.float16),
            mirrored=np.stack([known[k][1] for k in keys]).astype(np.float16),
            found=np.array([known[k][2] for k in keys], bool),
        )
    os.replace(tmp, cache)
