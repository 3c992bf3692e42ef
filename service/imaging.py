"""Decode uploaded bytes into pixels, safely: formats, size limits, EXIF, odd modes.

This is the service's side of the preprocessing contract's first step: Pillow decodes,
EXIF orientation is applied, the first frame of an animation is used, and the gray
image the classifier sees is Pillow's "L" conversion (as in the trainer).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from service.errors import BadImage, PayloadTooLarge, UnsupportedMediaType

FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"}
# We enforce our own pixel limit before decoding; Pillow's check (which only warns
# between 1x and 2x its limit) stays as a second line of defence.
Image.MAX_IMAGE_PIXELS = 200_000_000


class ImageTooLarge(PayloadTooLarge):
    code = "image_too_large"


@dataclass
class Decoded:
    """An upload as RGB (for the detector) and 8-bit gray (for the classifier).

    Large JPEGs may be decoded at a reduced scale (see ``decode``): ``scale`` is the
    upload's pixels per decoded pixel and ``original_size`` the upload's (width, height),
    so results can be given in the upload's coordinates.
    """

    rgb: np.ndarray  # [H, W, 3] uint8
    gray: np.ndarray  # [H, W] uint8
    format: str
    scale: float
    original_size: tuple[int, int]

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def original_width(self) -> int:
        return self.original_size[0]

    @property
    def original_height(self) -> int:
        return self.original_size[1]


def decode(data: bytes, max_pixels: int, max_side: int = 0) -> Decoded:
    """Decode an upload; raise BadImage, ImageTooLarge or UnsupportedMediaType.

    A JPEG at least twice ``max_side`` on its long side is decoded at 1/2, 1/4 or 1/8
    scale (libjpeg's DCT scaling, Pillow's ``draft``), never below ``max_side``: a phone
    photo then decodes several times faster, and faces keep far more pixels than the
    96-px classifier input needs. 0 turns it off.
    """
    if not data:
        raise BadImage("the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            _check_header(im, max_pixels)
            full = im.size
            if max_side and im.format == "JPEG" and max(full) >= 2 * max_side:
                k = max(full) / max_side
                im.draft(None, (max(1, int(full[0] / k)), max(1, int(full[1] / k))))
            im.seek(0)
            im.load()
    except (ImageTooLarge, UnsupportedMediaType):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLarge(f"the image has too many pixels: {e}") from None
    except UnidentifiedImageError:
        raise BadImage(
            "the data is not an image in a supported format "
            f"({', '.join(sorted(FORMATS - {'MPO'}))})"
        ) from None
    except Exception as e:  # noqa: BLE001 - undecodable data, whatever the decoder raised
        # Pillow's decoders raise OSError, ValueError, SyntaxError, EOFError, IndexError,
        # TypeError, MemoryError, ZeroDivisionError... and plugin bugs on hostile bytes
        # (fuzzing found a SPIDER header that raises AttributeError). The upload is the
        # problem (400), not the server (500).
        raise BadImage(f"the image could not be decoded: {_short(e)}") from None
    fmt = im.format or ""
    scale = full[0] / im.size[0]
    if _orient(im):  # the upload's size as seen upright
        full = (full[1], full[0])
    rgb_image = _to_rgb(im)
    # Both arrays from the one RGB image: the gray one is what to_gray(rgb) gives (the
    # same "L" conversion of the same pixels), without a round trip through NumPy.
    rgb = np.asarray(rgb_image, dtype=np.uint8)
    gray = np.asarray(rgb_image.convert("L"), dtype=np.uint8)
    return Decoded(rgb, gray, "JPEG" if fmt == "MPO" else fmt, scale, full)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """The gray image the classifier sees: Pillow's "L" conversion, as in the trainer."""
    return np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint8)


def _short(e: Exception) -> str:
    return (str(e) or type(e).__name__)[:200]


def _check_header(im: Image.Image, max_pixels: int) -> None:
    if im.format not in FORMATS:
        raise UnsupportedMediaType(f"image format {im.format} is not supported")
    w, h = im.size
    if w < 1 or h < 1:
        raise BadImage(f"the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageTooLarge(f"the image is {w}x{h} = {w * h} pixels; the limit is {max_pixels}")


# EXIF orientation -> the turn that makes the image upright (as ImageOps.exif_transpose).
_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The orientations that turn the image a quarter (they swap width and height).
_QUARTER_TURNS = {5, 6, 7, 8}


def _orient(im: Image.Image) -> bool:
    """Turn the image upright by its EXIF orientation; return whether by a quarter turn.

    In place: most uploads need no turn, and a copy of a 12-MP photo costs milliseconds.
    The quarter turn is read from the tag, not from a change of size: a near-square JPEG
    decoded at 1/8 can come out square, and its size would not change. The pixels are
    turned here rather than by ImageOps.exif_transpose(in_place=True), which turns them
    and then rewrites the EXIF block: on a block Pillow cannot write back (a rational with
    a zero denominator, a tag of the wrong type) it raised after the turn, and the upload
    was reported with its unturned size around turned pixels and boxes.
    """
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject a good image
        return False
    turn = _TURNS.get(orientation) if isinstance(orientation, int) else None
    if turn is None:
        return False
    im.load()
    # What exif_transpose(in_place=True) does to the image, without touching its EXIF.
    im.im = im.im.transpose(turn)
    im._size = im.im.size
    return orientation in _QUARTER_TURNS


def _to_rgb(im: Image.Image) -> Image.Image:
    """An RGB image from any mode: 16-bit and float scaled, alpha composited on white.
    An RGB upload (most photos) is returned as it is, not copied."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im, dtype=np.int64)
        peak = 65535 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255
        g = (np.clip(a, 0, peak) * 255 // peak).astype(np.uint8)
        return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2))
    if im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        lo, hi = float(a.min(initial=0)), float(a.max(initial=1))
        g = ((a - lo) / ((hi - lo) or 1) * 255).astype(np.uint8)
        return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    return im if im.mode == "RGB" else im.convert("RGB")
