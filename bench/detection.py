"""Face detection backends side by side: speed, and recall/precision on group photos
built from FER2013 faces (known boxes), with the boxes of each backend compared to
OpenCV's ``cv2.FaceDetectorYN``.

    python -m bench.detection [--shared ../shared] [--photos 120] [--seconds 5]

Each synthetic photo is a 640x480 scene (a photo from scikit-image's data, which has no
faces) with 1-8 PrivateTest faces pasted at 40-160 px: a face counts as found when a box's
centre lies inside it and the box's long side is 0.6-1.6x the face's side; a box that
matches no face is a false positive. Speed: each backend detects the same photos,
alternating in rounds, one thread (the service's default per worker here). The bf16 rows
are YuNet as the service runs it where the CPU computes bf16 natively: its threshold
lowered by ``BF16_SCORE_MARGIN`` (service/detection/yunet_openvino.py).

Varied sizes: the 60 photos of bench.images' varied set (long side 240-2400 px, aspect
1:2 to 2:1), decoded as the service decodes uploads, each detector meeting every size in
turn, as a service meets real clients' photos: ms per photo (mean, p50, p90, p99), and
each backend's boxes against OpenCV's on them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bench.images import SHARED, single_face_jpeg, varied_jpegs
from bench.machine import header
from bench.server import YUNET
from service.detection import Face, YuNetDetector, YuNetOpenVINODetector
from service.imaging import decode

BACKGROUNDS = ("coffee", "rocket", "chelsea", "hubble_deep_field", "immunohistochemistry")


def scenes(shared: Path, n: int, seed: int = 0) -> list[tuple[np.ndarray, list[tuple]]]:
    """``n`` RGB 640x480 photos and their faces as (x, y, side) squares."""
    from skimage import data

    rng = np.random.default_rng(seed)
    files = sorted((shared / "data" / "fer2013" / "test").glob("*/PrivateTest_*.jpg"))
    backs = [cv2.resize(getattr(data, b)()[..., :3], (640, 480)) for b in BACKGROUNDS]
    out = []
    for _ in range(n):
        img = backs[rng.integers(len(backs))].copy()
        faces: list[tuple] = []
        for _ in range(int(rng.integers(1, 9))):
            side = int(rng.integers(40, 161))
            x, y = int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side))
            if any(_overlap((x, y, side), f) for f in faces):
                continue
            gray = np.asarray(Image.open(files[rng.integers(len(files))]).convert("L"))
            img[y : y + side, x : x + side] = cv2.resize(gray, (side, side))[:, :, None]
            faces.append((x, y, side))
        out.append((img, faces))
    return out


def _overlap(a: tuple, b: tuple) -> bool:
    return not (
        a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[2] <= b[1] or b[1] + b[2] <= a[1]
    )


def _matches(box: Face, face: tuple) -> bool:
    x, y, side = face
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    inside = x <= cx <= x + side and y <= cy <= y + side
    return inside and 0.6 <= max(box.width, box.height) / side <= 1.6


def accuracy(detector, photos) -> dict:
    """Recall and precision of ``detector`` on photos with known faces."""
    found = truth = boxes = false = 0
    for img, faces in photos:
        got = detector.detect(img)
        boxes += len(got)
        truth += len(faces)
        found += sum(any(_matches(b, f) for b in got) for f in faces)
        false += sum(not any(_matches(b, f) for f in faces) for b in got)
    return {"recall": found / truth, "precision": (boxes - false) / max(boxes, 1), "faces": truth}


def same_boxes(a, b, photos) -> tuple[int, float]:
    """Photos on which two detectors disagree on the number of faces, and the largest
    difference of a box coordinate (px) where they agree."""
    differ, worst = 0, 0.0
    for img, _ in photos:
        fa, fb = a.detect(img), b.detect(img)
        if len(fa) != len(fb):
            differ += 1
            continue
        for p, q in zip(sorted(fa, key=_key), sorted(fb, key=_key), strict=True):
            worst = max(worst, *(abs(u - v) for u, v in zip(_key(p), _key(q), strict=True)))
    return differ, worst


def _key(f: Face) -> tuple:
    return (f.x, f.y, f.width, f.height)


def speed(detectors: dict, images: list[np.ndarray], seconds: float) -> dict[str, float]:
    """Mean ms per image of each detector, measured in alternating rounds."""
    return {k: float(np.mean(v)) for k, v in timings(detectors, images, seconds).items()}


def timings(detectors: dict, images: list[np.ndarray], seconds: float) -> dict[str, list[float]]:
    """Every call's ms, per detector, measured in alternating rounds over all the images."""
    ms: dict[str, list[float]] = {k: [] for k in detectors}
    t_end = time.perf_counter() + seconds * len(detectors)
    while time.perf_counter() < t_end:
        for name, det in detectors.items():
            for img in images:
                t = time.perf_counter()
                det.detect(img)
                ms[name].append(1000 * (time.perf_counter() - t))
    return ms


def varied(detectors: dict, seconds: float) -> None:
    """Speed and boxes on photos of many sizes (bench.images' varied set)."""
    from bench.loadgen import percentiles
    from service.config import Settings

    photos = [decode(b, 10**9, Settings().decode_max_side).rgb for b in varied_jpegs()]
    ms = timings(detectors, photos, seconds)
    print(f"\nvaried sizes: {len(photos)} photos, long side 240-2400 px, aspect 1:2 to 2:1")
    print(f"{'backend':19} {'mean ms':>8} {'p50':>7} {'p90':>7} {'p99':>7} {'x opencv':>8}")
    ref = float(np.mean(ms["opencv 640"]))
    for name, v in ms.items():
        p = percentiles(v)
        print(
            f"{name:19} {np.mean(v):>8.2f} {p['p50_ms']:>7.2f} {p['p90_ms']:>7.2f} "
            f"{p['p99_ms']:>7.2f} {ref / np.mean(v):>8.2f}",
            flush=True,
        )
    print_same_boxes(detectors, [(img, []) for img in photos], " on varied sizes")


def print_same_boxes(detectors: dict, photos, where: str = "") -> None:
    """Each 640-px OpenVINO backend's boxes against OpenCV's on ``photos``."""
    for name, det in detectors.items():
        if name != "opencv 640" and name.endswith(" 640"):
            differ, worst = same_boxes(detectors["opencv 640"], det, photos)
            print(
                f"{name} vs opencv 640{where}: {differ} photos with another face count, "
                f"largest box difference elsewhere {worst:.0f} px"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shared", type=Path, default=SHARED)
    p.add_argument("--photos", type=int, default=120)
    p.add_argument("--seconds", type=float, default=5.0, help="per backend")
    p.add_argument("--max-side", type=int, action="append", help="detection sizes (640)")
    p.add_argument("--skip-varied", action="store_true", help="not the varied sizes")
    args = p.parse_args()
    cv2.setNumThreads(1)
    print(header() + "; one thread each")
    sides = args.max_side or [640]
    dets = {"opencv 640": YuNetDetector(YUNET, 0.7, 640)}
    for side in sides:
        for prec in ("f32", "bf16"):
            dets[f"openvino {prec} {side}"] = YuNetOpenVINODetector(YUNET, 0.7, side, 1, prec)
    photos = scenes(args.shared, args.photos)
    print(f"{len(photos)} photos, {sum(len(f) for _, f in photos)} faces")
    print(f"{'backend':19} {'recall':>7} {'precision':>9} {'ms/photo':>9} {'ms/640x480 jpeg':>15}")
    ms = speed(dets, [img for img, _ in photos[:20]], args.seconds)
    one = decode(single_face_jpeg(), 10**9).rgb
    ms_one = speed(dets, [one], args.seconds)
    for name, det in dets.items():
        acc = accuracy(det, photos)
        print(
            f"{name:19} {acc['recall']:>7.3f} {acc['precision']:>9.3f} {ms[name]:>9.2f} "
            f"{ms_one[name]:>15.2f}",
            flush=True,
        )
    print_same_boxes(dets, photos)
    if not args.skip_varied:
        varied(dets, args.seconds)


if __name__ == "__main__":
    main()
