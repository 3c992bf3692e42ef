"""Emotions over time in one video file: decode, sample, classify, track, sum up per track.

OpenCV's FFmpeg backend decodes (whatever the opencv wheel's FFmpeg reads: MP4/H.264,
WebM/VP8-VP9, MOV, AVI/MJPEG, MKV). Frames are sampled at ``fps`` by their presentation
time; each sampled frame goes through the service's own Analyzer (detect, crop, classify,
exactly as /predict), then the tracker gives each face its track id.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from service.analyzer import Analyzer, Options, threshold
from service.detection import Face
from service.errors import APIError, InvalidOptions, PayloadTooLarge, UnsupportedMediaType
from service.imaging import Decoded, ImageTooLarge, to_gray
from service.model.calibration import uncertain
from service.model.classifier import Classifier
from service.video.tracking import Smoother, Tracker

# The containers we let FFmpeg open, by their first bytes: anything else (playlists,
# concat scripts, images, audio files) is refused before FFmpeg sees it.
CONTAINERS = {"mp4": "MP4/MOV", "matroska": "WebM/MKV", "avi": "AVI"}
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
# A stream that stops this long before the duration its header gives is reported truncated.
TRUNCATED_SLACK_S = 1.0


class BadVideo(APIError):
    status, code = 400, "bad_video"


class VideoTooLong(PayloadTooLarge):
    code = "video_too_long"


def container(head: bytes) -> str | None:
    """The container of a file from its first 12 bytes: mp4, matroska, avi or None."""
    if len(head) >= 8 and head[4:8] in _MP4_BOXES:
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    return None


@dataclass(frozen=True)
class VideoOptions:
    """Per-request choices (validated by service.api.schemas)."""

    fps: float = 4.0  # frames analysed per second of video
    start: float = 0.0  # window, s
    end: float | None = None  # None: to the end
    max_faces: int = 20
    min_face_size: int = 0
    top_k: int = 3
    smoothing: float = 0.0  # time constant of each track's moving average, s; 0 = off
    min_confidence: float | None = None  # uncertain threshold; None: the version's


@dataclass(frozen=True)
class Limits:
    """What one request (or one CLI run) may analyse."""

    max_seconds: float = 0.0  # longest window; 0 = no limit
    max_frames: int = 0  # most analysed frames; 0 = no limit
    max_pixels: int = 40_000_000  # largest frame
    # Wall time one analysis may take, s; 0 = no limit. The service sets it inside the
    # worker timeout, so that no video, however slow to decode, gets its worker killed.
    deadline: float = 0.0


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float | None  # the container's frame rate; None when it does not say
    frame_count: int | None
    duration: float | None  # s

    @classmethod
    def of(cls, cap: cv2.VideoCapture) -> VideoInfo:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if int(cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 180 == 90:
            w, h = h, w  # OpenCV turns the frames upright, as players do
        rate = cap.get(cv2.CAP_PROP_FPS)
        fps = rate if math.isfinite(rate) and 0 < rate <= 1000 else None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        count = n if n > 0 else None
        return cls(w, h, fps, count, count / fps if count and fps else None)


@dataclass
class Frame:
    """One analysed frame: faces largest first, their track ids and probabilities."""

    index: int  # the frame's number in the file
    time: float  # presentation time, s
    faces: list[Face]
    track_ids: list[int]
    probs: np.ndarray  # [faces, labels]
    smoothed: np.ndarray | None  # the same, smoothed per track (smoothing on)
    seconds: dict[str, float]  # decode, detect, crop, classify, track


@dataclass
class TrackSummary:
    """What one track amounts to over the whole analysis."""

    id: int
    first_time: float
    last_time: float
    frames: int = 0
    prob_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # (start, end, label index, uncertain): consecutive analysed frames with the same
    # emotion and the same uncertain flag (None: no threshold in effect)
    timeline: list[list] = field(default_factory=list)

    @property
    def mean(self) -> np.ndarray:
        return self.prob_sum / max(1, self.frames)

    def add(
        self, t: float, span: float, probs: np.ndarray, label: int, unsure: bool | None = None
    ) -> None:
        self.frames += 1
        self.last_time = t
        self.prob_sum = probs.copy() if not len(self.prob_sum) else self.prob_sum + probs
        last = self.timeline[-1] if self.timeline else None
        # A stretch ends where the emotion changes, a frame is missed, or the face turns
        # uncertain or certain again.
        if last and last[2] == label and last[3] == unsure and t <= last[1] + span / 2:
            last[1] = t + span
        else:
            self.timeline.append([t, t + span, label, unsure])


class VideoAnalysis:
    """One video opened for analysis. Construction opens it and checks the request against
    the limits (BadVideo, VideoTooLong, InvalidOptions, ImageTooLarge); ``frames`` then
    yields each analysed frame and ``tracks`` sums them up. Close it (or use ``with``)."""

    def __init__(
        self,
        path: Path,
        analyzer: Analyzer,
        model: Classifier,
        opts: VideoOptions,
        limits: Limits,
        threads: int = 0,
    ):
        self.analyzer, self.model, self.opts, self.limits = analyzer, model, opts, limits
        self.cap = _open(path, threads)
        try:
            self.info = VideoInfo.of(self.cap)
            self.start, self.end = self._window()
        except BaseException:
            self.cap.release()
            raise
        self.truncated = False
        self.summaries: dict[int, TrackSummary] = {}
        self.below = threshold(opts.min_confidence, model)  # the uncertain threshold

    def __enter__(self) -> VideoAnalysis:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.cap.release()

    @property
    def expected_frames(self) -> int | None:
        """About how many frames the window will give (for progress), None if unknown."""
        return _expected(self.start, self.end, self.opts.fps, self.info.fps)

    def _window(self) -> tuple[float, float | None]:
        info, opts, lim = self.info, self.opts, self.limits
        if info.width * info.height > lim.max_pixels:
            raise ImageTooLarge(_too_many_pixels(info.width, info.height, lim.max_pixels))
        start, end = opts.start, opts.end
        if info.duration is not None:
            if start >= info.duration:
                raise InvalidOptions(
                    f"start={start:g} s is past the video's end ({info.duration:.2f} s)",
                    fields={"start": [f"must be less than {info.duration:.2f}"]},
                )
            end = info.duration if end is None else min(end, info.duration)
        if end is None:
            return start, None  # length unknown: checked while decoding
        if lim.max_seconds and end - start > lim.max_seconds + 1e-6:
            raise VideoTooLong(_too_long(end - start, start, lim.max_seconds))
        n = _expected(start, end, opts.fps, info.fps) or 0
        if lim.max_frames and n > lim.max_frames:
            most = lim.max_frames / (end - start)
            raise InvalidOptions(
                f"fps={opts.fps:g} over {end - start:.1f} s is {n} frames; one request "
                f"analyses at most {lim.max_frames}: lower fps or send a shorter window",
                fields={"fps": [f"at most {most:.2f} for this window"]},
            )
        return start, end

    def frames(self) -> Iterator[Frame]:
        """Each analysed frame in order; BadVideo if not one frame decodes."""
        interval = 1.0 / self.opts.fps
        source = 1.0 / self.info.fps if self.info.fps else 0.0
        tracker = Tracker(max_missed=max(2, round(self.opts.fps)))  # 2 frames or 1 s
        smoother = Smoother(self.opts.smoothing)
        if self.start > 0:
            self.cap.set(cv2.CAP_PROP_POS_MSEC, self.start * 1000)
        due, grabbed, last_t, decode_s, analysed = self.start, 0, None, 0.0, 0
        stop_at = time.monotonic() + self.limits.deadline if self.limits.deadline else math.inf
        while True:
            t0 = time.perf_counter()
            if not _grab(self.cap):
                break
            grabbed += 1
            t = last_t = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
            if self.end is not None and t >= self.end - 1e-6:
                break
            if self.end is None and self.limits.max_seconds:
                if t - self.start > self.limits.max_seconds:
                    raise VideoTooLong(_too_long(None, self.start, self.limits.max_seconds))
            if t < due - 0.45 * source:  # the frame nearest the due time, ties later
                decode_s += time.perf_counter() - t0
                continue
            bgr = _retrieve(self.cap)
            decode_s += time.perf_counter() - t0
            if bgr is None:
                continue
            if bgr.shape[0] * bgr.shape[1] > self.limits.max_pixels:  # a size change mid-stream
                raise ImageTooLarge(
                    _too_many_pixels(bgr.shape[1], bgr.shape[0], self.limits.max_pixels)
                )
            index = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES)) - 1
            analysed += 1
            if self.limits.max_frames and analysed > self.limits.max_frames:
                # Checked up front from the duration; this is for streams that do not
                # declare one (a browser's MediaRecorder WebM, a header edited out).
                raise VideoTooLong(
                    f"this video gives more than {self.limits.max_frames} frames at "
                    f"fps={self.opts.fps:g} (stopped at {t:.1f} s; its length is not in "
                    "its header): send a shorter window (start, end) or a lower fps"
                )
            frame = self._analyse(bgr, index, t, tracker, smoother, max(interval, source))
            frame.seconds = {"decode": decode_s, **frame.seconds}
            decode_s = 0.0
            yield frame
            if time.monotonic() > stop_at:
                raise VideoTooLong(
                    f"analysing this video takes longer than one request may "
                    f"({self.limits.deadline:g} s, stopped at {t:.1f} s of video): "
                    "send a shorter window (start, end) or a lower fps"
                )
            # The next due time on the grid after this frame (never the same one twice).
            past = (max(t, due) - self.start) / interval
            due = self.start + (math.floor(past + 1e-6) + 1) * interval
        if not grabbed:
            raise BadVideo("no video frame could be decoded (zero frames, truncated or corrupt)")
        if last_t is not None and self.end is not None:
            self.truncated = last_t + source < self.end - TRUNCATED_SLACK_S

    def _analyse(
        self,
        bgr: np.ndarray,
        index: int,
        t: float,
        tracker: Tracker,
        smoother: Smoother,
        interval: float,
    ) -> Frame:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        img = Decoded(rgb, to_gray(rgb), "video", 1.0, (w, h))
        opts = Options(
            self.opts.max_faces,
            self.opts.min_face_size,
            True,
            self.opts.top_k,
            whole_if_no_face=False,
        )
        found = self.analyzer.classify(img, opts, self.model)
        t1 = time.perf_counter()
        ids = tracker.update(found.faces, t)
        smoothed = None
        if self.opts.smoothing > 0:
            smoothed = np.stack([smoother(i, t, p) for i, p in zip(ids, found.probs, strict=True)])
            smoothed = smoothed.reshape(found.probs.shape)
        labelled = found.probs if smoothed is None else smoothed
        for i, p, s in zip(ids, found.probs, labelled, strict=True):
            summary = self.summaries.setdefault(i, TrackSummary(i, t, t))
            unsure = uncertain(float(np.max(s)), self.below)
            summary.add(t, interval, p, int(np.argmax(s)), unsure)
        seconds = {**found.seconds, "track": time.perf_counter() - t1}
        return Frame(index, t, found.faces, ids, found.probs, smoothed, seconds)

    def tracks(self) -> list[TrackSummary]:
        """Every track seen so far, by id."""
        return [self.summaries[k] for k in sorted(self.summaries)]


def _expected(start: float, end: float | None, fps: float, source_fps: float | None) -> int | None:
    if end is None:
        return None
    return max(1, math.ceil((end - start) * min(fps, source_fps or fps) - 1e-6))


def _grab(cap: cv2.VideoCapture) -> bool:
    """The next frame, False at the end; a stream that breaks off ends there."""
    try:
        return bool(cap.grab())
    except cv2.error:
        return False


def _retrieve(cap: cv2.VideoCapture) -> np.ndarray | None:
    try:
        ok, bgr = cap.retrieve()
    except cv2.error:
        return None
    return bgr if ok else None


def _open(path: Path, threads: int) -> cv2.VideoCapture:
    with open(path, "rb") as f:
        head = f.read(12)
    if not head:
        raise BadVideo("the video is empty")
    if container(head) is None:
        raise UnsupportedMediaType(
            f"the upload is not a video in a supported container ({', '.join(CONTAINERS.values())})"
        )
    params = [cv2.CAP_PROP_N_THREADS, threads] if threads else []
    try:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    except cv2.error as e:
        raise BadVideo(f"the video could not be opened: {str(e)[:200]}") from None
    if not cap.isOpened():
        cap.release()
        raise BadVideo(
            "no video stream could be opened in this file (audio only, truncated or corrupt?)"
        )
    return cap


def _too_many_pixels(w: int, h: int, most: int) -> str:
    return f"the video's frames are {w}x{h} = {w * h} pixels; the limit is {most}"


def _too_long(length: float | None, start: float, most: float) -> str:
    what = f"{length:.1f} s" if length is not None else "longer than that"
    return (
        f"the part of the video to analyse is {what}; one request analyses at most "
        f"{most:g} s: send start and end (seconds) for a window, e.g. "
        f"start={start:g}&end={start + most:g}, and the next window after it"
    )
