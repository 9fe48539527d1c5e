"""Pillow-only image handling shared by validation and sharding.

This module never imports TensorFlow, so process pools can spawn workers from it cheaply.
Validation and sharding decode through the same `decode_rgb`, so the normalisation that the
validation report promises is exactly what the shards get.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import random
import shutil
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from components.data.affine import draw_ranges, inverse_affine, to_pillow
from components.data.fit import fit_image

# Modes that map onto RGB without losing meaning. 16-bit and float modes ("I;16", "I", "F")
# would need a tone mapping we can't choose for the user, so they are quarantined instead.
CONVERTIBLE_MODES = {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1", "LAB", "HSV"}
# The formats photos and generators' outputs come in. Pillow's other decoders (PSD, EPS, ICNS,
# FITS, ...) are rarely exercised code that an upload would otherwise reach. A phone's MPO opens as JPEG.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


# libjpeg's standard luminance table (ITU-T T.81, Annex K), which its quality setting scales (jcparam.c).
IJG_LUMINANCE = (
    *(16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56),
    *(14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92),
    *(49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
)


def _scaled_sum(quality: int) -> int:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return sum(min(max((value * scale + 50) // 100, 1), 255) for value in IJG_LUMINANCE)


QUALITY_SUMS = {quality: _scaled_sum(quality) for quality in range(1, 101)}


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
    jpeg_quality: int | None = None  # estimated (jpeg_quality); None for other formats


def read_file(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file, never through a symbolic link: a link can lead outside the
    dataset root. Any failure to read is the file's reason, never the run's."""
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise UnusableImage("symbolic link: refused, it could lead outside the dataset root")
        if not stat.S_ISREG(info.st_mode):
            raise UnusableImage(f"not a regular file ({_file_kind(info.st_mode)})")
        # O_NOFOLLOW: the name may have become a link since lstat. O_NONBLOCK: opening a FIFO
        # that took its place must not hang the worker.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UnusableImage(f"not a regular file ({_file_kind(info.st_mode)})")
            return handle.read(), info
    except OSError as error:  # the message alone: the path may not be printable
        raise UnusableImage(f"unreadable: {type(error).__name__}: {error.strerror or error.errno}") from None
    except MemoryError:
        raise UnusableImage("unreadable: larger than the per-file memory budget (data.decode_memory_mb)") from None


def decode_rgb(data: bytes, max_pixels: int) -> tuple[Image.Image, ImageFacts]:
    """Fully decode into RGB, applying EXIF orientation; raise UnusableImage otherwise."""
    if not data:
        raise UnusableImage("zero-byte file")
    digest = hashlib.sha256(data).hexdigest()
    image = _decode(data, max_pixels)
    image_format, mode, size = image.format or "unknown", image.mode, image.size
    if mode not in CONVERTIBLE_MODES:
        raise UnusableImage(f"unsupported mode {mode}")
    try:
        rgb, steps = _normalise(image)
    except MemoryError:
        raise UnusableImage("out of memory while normalising: over the per-file budget (data.decode_memory_mb)") from None
    except Exception as error:  # e.g. a broken EXIF block: SyntaxError, struct.error, TypeError
        raise UnusableImage(f"normalising failed: {type(error).__name__}: {error}") from None
    return rgb, ImageFacts(digest, len(data), image_format, mode, size[0], size[1], "+".join(steps) or "none", jpeg_quality(image))


def jpeg_quality(image: Image.Image) -> int | None:
    """The libjpeg quality whose luminance table is closest to the file's. Compared by sum, which
    holds whatever order Pillow lists the table in; a table of another encoder gets the nearest
    equivalent. None for other formats."""
    tables = getattr(image, "quantization", None) if image.format == "JPEG" else None
    if not tables or 0 not in tables:
        return None
    observed = sum(tables[0])
    return min(QUALITY_SUMS, key=lambda quality: abs(QUALITY_SUMS[quality] - observed))


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow only warns between max_pixels and twice that; a bomb is a bomb either way.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
            try:
                image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
                image.load()  # a header parse is not enough: truncation shows only on full decode
                return image
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnusableImage(f"decompression bomb: {error}") from None
    except Image.UnidentifiedImageError:
        raise UnusableImage(f"not an image in an accepted format ({', '.join(ACCEPTED_FORMATS)})") from None
    except MemoryError:
        raise UnusableImage("out of memory while decoding: over the per-file budget (data.decode_memory_mb)") from None
    except Exception as error:  # Pillow's decoders raise far more than OSError (NotImplementedError, struct.error, ...)
        raise UnusableImage(f"decode failed: {type(error).__name__}: {error}") from None


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a device",
        stat.S_ISBLK: "a device",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), "special file")


def list_entries(folder: Path) -> list[Path]:
    """Every entry below folder that is not a plain folder, sorted. Links are listed, not followed:
    links to folders appear as entries (and are refused when read), never walked into."""
    entries = []
    for directory, folders, files in os.walk(folder):  # followlinks=False
        entries += [Path(directory, name) for name in files]
        entries += [Path(directory, name) for name in folders if os.path.islink(os.path.join(directory, name))]
    return sorted(entries)


def inspect_file(job: tuple[str, str, str, str, int]) -> dict:
    """One validation report row (see validate.REPORT_COLUMNS), run in a worker process."""
    split, name, path, relative, max_pixels = job
    row = file_row(split, name, path, relative)
    try:
        data, info = read_file(Path(path))
        row.update(bytes=info.st_size, mtime_ns=info.st_mtime_ns, sha256=hashlib.sha256(data).hexdigest())
        _, facts = decode_rgb(data, max_pixels)
    except UnusableImage as error:
        return quarantined_row(row, str(error))
    facts_row = {"format": facts.format, "mode": facts.mode, "width": facts.width, "height": facts.height, "normalised": facts.normalised}
    facts_row["jpeg_quality"] = "" if facts.jpeg_quality is None else facts.jpeg_quality
    return {**row, "status": "ok", "reason": "", **facts_row}


def file_row(split: str, name: str, path: str, relative: str) -> dict:
    """A report row's identity: size and time of the entry itself (lstat), as validation's cache sees it."""
    row = {"split": split, "class_name": name, "path": relative, "bytes": -1, "mtime_ns": -1}
    with contextlib.suppress(OSError):
        info = os.lstat(path)
        row.update(bytes=info.st_size, mtime_ns=info.st_mtime_ns)
    return row


def copy_regular_file(source: Path, target: Path) -> None:
    """Copy without following a link out of the dataset, and without hanging on a FIFO."""
    info = os.lstat(source)
    if not stat.S_ISREG(info.st_mode):
        raise UnusableImage("not a regular file")
    descriptor = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as reader, open(target, "wb") as writer:
        shutil.copyfileobj(reader, writer)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def printable(name: str) -> str:
    """A file name for output: bytes that are not UTF-8 become backslash escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def quarantined_row(row: dict, reason: str) -> dict:
    return {
        "sha256": "",
        **row,
        "status": "quarantined",
        "reason": reason,
        "format": "",
        "mode": "",
        "width": 0,
        "height": 0,
        "normalised": "",
    }


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


def encode(image: Image.Image, size: int | None, encoding: str, quality: int) -> bytes:
    """Resize to size×size (None keeps the size) and re-encode, identically for both classes (see DESIGN: codec bias)."""
    if size is not None and image.size != (size, size):
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
    """Bilinear warp by components/data/affine.py's inverse map, with 'nearest' fill."""
    width, height = image.size
    a, b, c, d, e, f = to_pillow(coefficients)
    # Edge padding reproduces Keras' fill_mode="nearest" (Pillow can only fill with a colour);
    # one image size of margin covers any rotation plus a shift below one image size.
    margin = max(width, height)
    padded = Image.fromarray(np.pad(np.asarray(image), ((margin, margin), (margin, margin), (0, 0)), mode="edge"))
    coefficients = (a, b, c + margin, d, e, f + margin)
    return padded.transform(image.size, Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR)


@dataclass(frozen=True)
class ImageJob:
    """One image for prepare_example, sent to a worker process (so plain, picklable fields)."""

    path: str
    size: int
    encoding: str  # "jpeg" or "png"
    quality: int  # JPEG quality; ignored for PNG
    max_pixels: int
    augment_policy: dict | None = None  # the geometric policy baked into a premade copy
    seed: int = 0  # the premade copy's draw
    fit: str = "resize"  # how the image meets `size` (components/data/fit.py)
    margin: float = 1  # fit=crop keeps this much around `size` for training's random crops


def prepare_example(job: ImageJob) -> bytes:
    """Shard-time work for one record, run in a worker process: decode, fit, (augment), re-encode."""
    data, _ = read_file(Path(job.path))
    return prepare_bytes(data, job)


def prepare_bytes(data: bytes, job: ImageJob) -> bytes:
    """prepare_example on bytes already in hand (an upload): the one decode, fit and re-encoding
    that shards, `detector predict` and the serving model all share."""
    image, _ = decode_rgb(data, job.max_pixels)
    image = fit_image(image, job.size, job.fit, job.margin)
    if job.augment_policy is not None:
        image = random_affine(image, rng=random.Random(job.seed), **job.augment_policy)
    return encode(image, None if job.fit == "crop" else job.size, job.encoding, job.quality)
