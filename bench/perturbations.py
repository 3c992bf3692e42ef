"""Image perturbations that stand for what real photos do to a face crop.

Each is a pure function ``(images, rng) -> images`` on uint8 ``[N, S, S, 3]`` faces at the
model's input size (gray repeated into three channels, as the trainer decodes them): the
input is never modified, shape and dtype are kept, gray stays gray, and the same ``rng``
state gives the same output. ``PERTURBATIONS`` maps a name that carries the parameters
to its function, so a benchmark, a test or a training recipe can share them.

Spatial parameters are given at FER2013's native 48 px and scaled to the input size,
except the low-resolution targets, which are absolute face sizes (a 24-px face is what
a detector finds for a small face in a group photo, whatever the model's input size).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import partial

import cv2
import numpy as np

Perturbation = Callable[[np.ndarray, np.random.Generator], np.ndarray]

CLEAN = "clean"
NATIVE_SIDE = 48  # FER2013's face side: the scale the spatial parameters are quoted at
MID_GRAY = 128


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _each(images: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i] = fn(image)
    return out


def identity(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The images unchanged (a copy), the reference every perturbation is compared with."""
    return images.copy()


def brightness(images: np.ndarray, rng: np.random.Generator, factor: float) -> np.ndarray:
    """Every pixel times ``factor``, clipped: an under- or over-exposed photo."""
    return _to_uint8(images * np.float32(factor))


def contrast(images: np.ndarray, rng: np.random.Generator, factor: float) -> np.ndarray:
    """Distances from each image's own mean times ``factor``: a flat, hazy photo."""
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return _to_uint8(mean + (x - mean) * factor)


def gamma(images: np.ndarray, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """``255 * (x / 255) ** exponent``: below 1 lifts shadows, above 1 deepens them."""
    table = _to_uint8(255.0 * (np.arange(256) / 255.0) ** exponent)
    return table[images]


def blur(images: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` px at 48 px (scaled to the input size): defocus, motion."""
    s = sigma * images.shape[1] / NATIVE_SIDE
    return _each(
        images, lambda im: cv2.GaussianBlur(im, (0, 0), s, borderType=cv2.BORDER_REPLICATE)
    )


def low_resolution(images: np.ndarray, rng: np.random.Generator, side: int) -> np.ndarray:
    """Down to ``side`` px and back up, as the service resizes: a small, distant face."""
    size = images.shape[1]

    def resample(im: np.ndarray) -> np.ndarray:
        small = cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)

    return _each(images, resample)


def jpeg(images: np.ndarray, rng: np.random.Generator, quality: int) -> np.ndarray:
    """A JPEG encode and decode at ``quality``: a photo that went through a messenger."""

    def roundtrip(im: np.ndarray) -> np.ndarray:
        ok, body = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        # Gray in three channels has neutral chroma, so it decodes back to exact gray.
        return cv2.imdecode(body, cv2.IMREAD_UNCHANGED)

    return _each(images, roundtrip)


def _warp(image: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    # Replicated borders: a real crop shows more of the scene there, never black corners.
    size = image.shape[0]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(
        image, inverse, (size, size), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )


def rotate(images: np.ndarray, rng: np.random.Generator, degrees: float) -> np.ndarray:
    """Each face turned by ``degrees`` one way or the other (random per image): a tilted head."""
    signs = rng.choice([-1.0, 1.0], size=len(images))
    c = (images.shape[1] - 1) / 2.0
    out = np.empty_like(images)
    for i, image in enumerate(images):
        m = cv2.getRotationMatrix2D((c, c), float(signs[i] * degrees), 1.0)
        out[i] = _warp(image, cv2.invertAffineTransform(m))
    return out


def box_jitter(images: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """The crop re-sampled from a face box off by up to ``fraction`` of the side in x and y
    and ``fraction`` in size (uniform, per image), as a face detector errs."""
    size = images.shape[1]
    c = (size - 1) / 2.0
    shifts = rng.uniform(-fraction, fraction, (len(images), 2)) * size
    scales = 1.0 + rng.uniform(-fraction, fraction, len(images))
    out = np.empty_like(images)
    for i, image in enumerate(images):
        k, (dx, dy) = scales[i], shifts[i]
        # Output pixel p samples the source at box centre + k * (p - centre).
        inverse = np.array([[k, 0, c + dx - k * c], [0, k, c + dy - k * c]], np.float64)
        out[i] = _warp(image, inverse)
    return out


def band_rows(size: int, top: float, bottom: float) -> slice:
    """The rows from ``top`` to ``bottom`` (fractions of the face height) of a ``size`` face."""
    return slice(round(top * size), round(bottom * size))


def occlude(images: np.ndarray, rng: np.random.Generator, top: float, bottom: float) -> np.ndarray:
    """A mid-gray full-width band from ``top`` to ``bottom`` of the face height: sunglasses,
    a scarf, a hand."""
    out = images.copy()
    out[:, band_rows(images.shape[1], top, bottom)] = MID_GRAY
    return out


def noise(images: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Gaussian noise of ``std`` levels per pixel: a dim, high-ISO photo."""
    # One value per pixel for all three channels: the model sees gray, so noise is gray.
    n = rng.normal(0.0, std, (*images.shape[:3], 1)).astype(np.float32)
    return _to_uint8(images + n)


PERTURBATIONS: dict[str, Perturbation] = {
    CLEAN: identity,
    "darker-x0.6": partial(brightness, factor=0.6),
    "brighter-x1.4": partial(brightness, factor=1.4),
    "contrast-x0.5": partial(contrast, factor=0.5),
    "gamma-0.5": partial(gamma, exponent=0.5),
    "gamma-2.0": partial(gamma, exponent=2.0),
    "blur-sigma1.5": partial(blur, sigma=1.5),
    "lowres-24px": partial(low_resolution, side=24),
    "lowres-32px": partial(low_resolution, side=32),
    "jpeg-q15": partial(jpeg, quality=15),
    "rotate-15deg": partial(rotate, degrees=15.0),
    "jitter-15pct": partial(box_jitter, fraction=0.15),
    "occlude-eyes-25-45pct": partial(occlude, top=0.25, bottom=0.45),
    "occlude-mouth-65-85pct": partial(occlude, top=0.65, bottom=0.85),
    "noise-std15": partial(noise, std=15.0),
}


def apply(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """``PERTURBATIONS[name]`` with a generator seeded by ``seed`` and the name.

    Seeding by name too gives a perturbation the same draws whichever others run with it.
    """
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return PERTURBATIONS[name](images, rng)


def select(only: str | None) -> list[str]:
    """The perturbations (never ``clean``) that a comma-separated list names, registry order.

    A token is a full name or a family before the first dash (``occlude``, ``gamma``).

    Raises:
        ValueError: a token names no perturbation.
    """
    names = [n for n in PERTURBATIONS if n != CLEAN]
    if not only:
        return names
    chosen: set[str] = set()
    for token in filter(None, (t.strip() for t in only.split(","))):
        found = {n for n in names if n == token or n.startswith(token + "-")}
        if not found:
            raise ValueError(f"no perturbation {token!r}; choose from {', '.join(names)}")
        chosen |= found
    return [n for n in names if n in chosen]
