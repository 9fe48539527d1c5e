"""Pillow-only image handling shared by validation and sharding.

This module never imports TensorFlow, so process pools can spawn workers from it cheaply.
Validation and sharding decode through the same `load_rgb`, so the normalisation that the
validation report promises is exactly what the shards get.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from components.affine import draw_ranges, inverse_affine, to_pillow

# Modes that map onto RGB without losing meaning. 16-bit and float modes ("I;16", "I", "F")
# would need a tone mapping we can't choose for the user, so they are quarantined instead.
CONVERTIBLE_MODES = {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1", "LAB", "HSV"}


class UnusableImage(Exception):
    """A file that must be quarantined; the message is the reason written to the report."""


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    bytes: int
    format: str
    mode: str
    width: int
    height: int
    normalised: str


def load_rgb(path: Path, max_pixels: int) -> tuple[Image.Image, ImageFacts]:
    """Fully decode a file into RGB, applying EXIF orientation; raise UnusableImage otherwise."""
    data = path.read_bytes()
    if not data:
        raise UnusableImage("zero-byte file")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            # Pillow only warns between max_pixels and twice that; a bomb is a bomb either way.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
            try:
                image = Image.open(io.BytesIO(data))
                image_format, mode, size = image.format or "unknown", image.mode, image.size
                image.load()  # a header parse is not enough: truncation shows only on full decode
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnusableImage(f"decompression bomb: {error}") from None
    except Image.UnidentifiedImageError:
        raise UnusableImage("not an image Pillow can identify") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UnusableImage(f"decode failed: {error}") from None
    if mode not in CONVERTIBLE_MODES:
        raise UnusableImage(f"unsupported mode {mode}")
    rgb, steps = _normalise(image)
    facts = ImageFacts(digest, len(data), image_format, mode, size[0], size[1], "+".join(steps) or "none")
    return rgb, facts


def _normalise(image: Image.Image) -> tuple[Image.Image, list[str]]:
    steps = []
    orientation = image.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        steps.append(f"exif-orientation-{orientation}")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite on white: a transparent background has no "true" colour, and black would
        # add a dark frame that the detector could learn instead of the content.
        steps.append(f"{image.mode}-alpha-on-white")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "RGB":
        steps.append(f"{image.mode}-to-RGB")
        image = image.convert("RGB")
    return image, steps


def encode(image: Image.Image, size: int, encoding: str, quality: int) -> bytes:
    """Resize to size×size and re-encode, identically for both classes (see DESIGN: codec bias)."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    if encoding == "jpeg":
        image.save(buffer, format="JPEG", quality=quality, subsampling=0)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def random_affine(
    image: Image.Image, rotation_degrees: float, shift_fraction: float, horizontal_flip: bool, rng: random.Random
) -> Image.Image:
    """One fused rotate/shift/flip warp, with the policy and 'nearest' fill of the live tf.data path."""
    width, height = image.size
    max_angle, max_x, max_y = draw_ranges({"rotation_degrees": rotation_degrees, "shift_fraction": shift_fraction}, width, height)
    angle, shift_x, shift_y = (rng.uniform(-limit, limit) for limit in (max_angle, max_x, max_y))
    flip = -1.0 if horizontal_flip and rng.random() < 0.5 else 1.0
    return affine_warp(image, inverse_affine(angle, shift_x, shift_y, flip, width, height, math))


def affine_warp(image: Image.Image, coefficients: tuple[float, ...]) -> Image.Image:
    """Bilinear warp by components/affine.py's inverse map, with 'nearest' fill."""
    width, height = image.size
    a, b, c, d, e, f = to_pillow(coefficients)
    # Edge padding reproduces Keras' fill_mode="nearest" (Pillow can only fill with a colour);
    # one image size of margin covers any rotation plus a shift below one image size.
    margin = max(width, height)
    padded = Image.fromarray(np.pad(np.asarray(image), ((margin, margin), (margin, margin), (0, 0)), mode="edge"))
    coefficients = (a, b, c + margin, d, e, f + margin)
    return padded.transform(image.size, Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR)


def prepare_example(job: tuple[str, int, str, int, int, dict | None, int]) -> bytes:
    """Shard-time work for one record, run in a worker process: decode, (augment), re-encode."""
    path, size, encoding, quality, max_pixels, augment_policy, seed = job
    image, _ = load_rgb(Path(path), max_pixels)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    if augment_policy is not None:
        image = random_affine(image, rng=random.Random(seed), **augment_policy)
    return encode(image, size, encoding, quality)
