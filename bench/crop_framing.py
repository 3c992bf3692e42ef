"""How YuNet boxes frame FER2013 faces: the face-crop scale the service should use.

Each FER2013 face is upscaled, pasted into a larger gray canvas and detected; the ratio of
the known crop side to the detected box's long side is the scale that makes a service
crop look like a training image (written into the model metadata as face_crop.scale).

    python -m bench.crop_framing [--shared ../shared] [--n 800]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from service.detection import YuNetDetector


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shared", type=Path, default=Path("../shared"))
    p.add_argument("--n", type=int, default=800)
    p.add_argument("--side", type=int, default=160, help="face size in the canvas")
    p.add_argument("--canvas", type=int, default=400)
    args = p.parse_args()
    det = YuNetDetector(args.shared / "pretrained" / "face_detection_yunet_2023mar.onnx")
    files = sorted((args.shared / "data" / "fer2013" / "test").glob("*/PrivateTest_*.jpg"))
    files = files[:: max(1, len(files) // args.n)][: args.n]
    s, c = args.side, args.canvas
    o = (c - s) // 2
    ratios, dx, dy = [], [], []
    for f in files:
        face = cv2.resize(np.asarray(Image.open(f).convert("L")), (s, s))
        canvas = np.full((c, c), 128, np.uint8)
        canvas[o : o + s, o : o + s] = face
        found = det.detect(np.repeat(canvas[:, :, None], 3, axis=2))
        if not found:
            continue
        b = max(found, key=lambda f: f.area)
        ratios.append(s / max(b.width, b.height))
        dx.append((b.x + b.width / 2 - (o + s / 2)) / s)
        dy.append((b.y + b.height / 2 - (o + s / 2)) / s)
    r = np.array(ratios)
    print(f"faces detected: {len(r)}/{len(files)}")
    print(
        f"crop side / box long side: median {np.median(r):.3f}, mean {r.mean():.3f}, "
        f"quartiles {np.percentile(r, 25):.3f}-{np.percentile(r, 75):.3f}"
    )
    print(
        f"box centre offset (fraction of crop side): x {np.median(dx):+.3f}, y {np.median(dy):+.3f}"
    )


if __name__ == "__main__":
    main()
