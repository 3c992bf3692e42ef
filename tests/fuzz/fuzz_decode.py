"""Coverage-guided fuzzing (atheris + libFuzzer) of the upload decoding path.

The property: any bytes either decode to RGB and gray arrays of the same size, or raise
one of the service's client errors (400 bad_image, 413 image_too_large, 415). Anything
else (another exception, a crash, a hang, wrong shapes) would be a 5xx or a dead worker.

    python -m tests.fuzz.fuzz_decode CORPUS_DIR -max_total_time=600      # a longer run
    python -m tests.fuzz.fuzz_decode CORPUS_DIR -max_total_time=30       # what CI runs

CORPUS_DIR gets seed images first (see seed()); libFuzzer adds what it finds. A crash
writes crash-<hash> in the working directory: copy it to tests/fuzz/regressions/, where
tests/fuzz/test_fuzz.py replays every file on each test run.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

MAX_PIXELS = 4_000_000


def check(data: bytes) -> None:
    """The property itself (also used by the regression test)."""
    from service.errors import APIError
    from service.imaging import decode

    try:
        img = decode(data, MAX_PIXELS)
    except APIError as e:
        if e.status not in (400, 413, 415):
            raise AssertionError(f"{e.status} {e.code}: {e.message}") from e
        return
    assert img.rgb.dtype == np.uint8 and img.rgb.ndim == 3 and img.rgb.shape[2] == 3
    assert img.gray.shape == img.rgb.shape[:2] and img.width * img.height <= MAX_PIXELS


def seed(folder: Path) -> None:
    """Small valid images of every supported format and several modes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    variants = {
        "rgb.jpg": (rgb, "JPEG", {}),
        "gray.jpg": (rgb.convert("L"), "JPEG", {}),
        "cmyk.jpg": (rgb.convert("CMYK"), "JPEG", {}),
        "progressive.jpg": (rgb, "JPEG", {"progressive": True}),
        "rgba.png": (rgb.convert("RGBA"), "PNG", {}),
        "i16.png": (Image.fromarray(np.arange(192, dtype=np.uint16).reshape(12, 16)), "PNG", {}),
        "palette.gif": (rgb.convert("P"), "GIF", {}),
        "rgb.webp": (rgb, "WEBP", {}),
        "rgb.bmp": (rgb, "BMP", {}),
        "float.tif": (Image.fromarray(np.ones((12, 16), np.float32)), "TIFF", {}),
    }
    for name, (im, fmt, kw) in variants.items():
        exif = im.getexif()
        exif[0x0112] = 6
        buf = io.BytesIO()
        if fmt in ("JPEG", "WEBP", "PNG", "TIFF"):
            kw = {**kw, "exif": exif.tobytes()}
        im.save(buf, fmt, **kw)
        (folder / name).write_bytes(buf.getvalue())


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        # Instrumented for coverage feedback: Pillow's format plugins load lazily, so
        # name them here or libFuzzer sees none of their branches.
        from PIL import (  # noqa: F401
            BmpImagePlugin,
            GifImagePlugin,
            Image,
            ImageOps,
            JpegImagePlugin,
            MpoImagePlugin,
            PngImagePlugin,
            TiffImagePlugin,
            WebPImagePlugin,
        )

        import service.imaging  # noqa: F401

    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpus:
        seed(Path(corpus[0]))
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
