"""Seeded fuzz: a few hundred mutated JPEG, PNG, WebP and TIFF files (random bytes, EXIF blocks,
header dimensions) go through validate. Nothing aborts, and every file is accounted for."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from components.config import DataConfig
from components.data.validate import ValidateConfig, read_report, run

SEED = 1789
MUTANTS = 320
FORMATS = {
    "JPEG": ("jpg", ["RGB", "L", "CMYK"]),
    "PNG": ("png", ["RGB", "L", "RGBA", "P"]),
    "WEBP": ("webp", ["RGB", "RGBA"]),
    "TIFF": ("tif", ["RGB", "L", "CMYK"]),
}
DIMENSIONS = [0, 1, 2, 7, 255, 4096, 65535]


def _exif(rng: random.Random) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = rng.randint(1, 8)  # orientation: exercises exif_transpose
    exif[0x010F] = "fuzz"
    exif[0x0132] = "2026:11:27 00:00:00"
    return exif.tobytes()


def _base(rng: random.Random, image_format: str) -> bytes:
    mode = rng.choice(FORMATS[image_format][1])
    size = (rng.randint(8, 40), rng.randint(8, 40))
    pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=image_format, exif=_exif(rng))
    return buffer.getvalue()


def _flip_bytes(data: bytes, rng: random.Random, start: int = 2) -> bytes:
    mutated = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        mutated[rng.randrange(min(start, len(data) - 1), len(data))] = rng.randrange(256)
    return bytes(mutated)


def _with_broken_exif(data: bytes, rng: random.Random) -> bytes:
    """Re-save with an EXIF block whose TIFF structure has random bytes in it."""
    image = Image.open(io.BytesIO(data))
    image.load()
    exif = _exif(rng)
    # Keeping the "Exif" and TIFF headers most of the time gets the damage into the tag parser.
    keep = rng.choice([6, 14, 14, 14])
    broken = exif[:keep] + _flip_bytes(exif[keep:], rng, start=0) if rng.random() < 0.9 else bytes(rng.randrange(256) for _ in range(40))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's TIFF writer complains about the block we broke
            image.save(buffer, format=image.format, exif=broken)
    except Exception:  # Pillow's TIFF writer parses the block first; the raw bytes then go in by hand
        return _flip_bytes(data, rng)
    return buffer.getvalue()


def _with_dimensions(data: bytes, rng: random.Random) -> bytes:
    """Rewrite the width and height the header claims, keeping checksums valid where there are any."""
    width, height = rng.choice(DIMENSIONS + [rng.randint(1, 100_000)]), rng.choice(DIMENSIONS + [rng.randint(1, 100_000)])
    mutated = bytearray(data)
    if data.startswith(b"\x89PNG"):
        mutated[16:24] = struct.pack(">II", width, height)
        mutated[29:33] = struct.pack(">I", zlib.crc32(bytes(mutated[12:29])))
    elif data.startswith(b"\xff\xd8"):
        marker = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        mutated[marker + 5 : marker + 9] = struct.pack(">HH", height % 65536, width % 65536)
    elif data[12:16] == b"VP8X":
        mutated[24:30] = ((width - 1) % 2**24).to_bytes(3, "little") + ((height - 1) % 2**24).to_bytes(3, "little")
    elif data[12:16] == b"VP8 ":
        mutated[26:30] = struct.pack("<HH", width % 2**14, height % 2**14)
    elif data.startswith(b"II*\x00"):
        _tiff_dimensions(mutated, width, height)
    return bytes(mutated)


def _tiff_dimensions(mutated: bytearray, width: int, height: int) -> None:
    (offset,) = struct.unpack_from("<I", mutated, 4)
    (count,) = struct.unpack_from("<H", mutated, offset)
    for entry in range(offset + 2, offset + 2 + 12 * count, 12):
        tag, kind = struct.unpack_from("<HH", mutated, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            struct.pack_into("<H" if kind == 3 else "<I", mutated, entry + 8, value % (2**16 if kind == 3 else 2**32))


def _mutant(rng: random.Random, image_format: str) -> bytes:
    data = _base(rng, image_format)
    kind = rng.choice(["bytes", "truncate", "exif", "dimensions", "exif+bytes"])
    if kind == "bytes":
        return _flip_bytes(data, rng)
    if kind == "truncate":
        return data[: rng.randrange(1, len(data))]
    if kind == "dimensions":
        return _with_dimensions(data, rng)
    broken = _with_broken_exif(data, rng)
    return _flip_bytes(broken, rng) if kind == "exif+bytes" else broken


def _fuzz_dataset(root: Path) -> dict[str, bytes]:
    rng = random.Random(SEED)
    folders = [f"{split}/{name}" for split in ("train", "test") for name in ("FAKE", "REAL")]
    files = {}
    for folder in folders:  # a few intact files, so no class can end up empty
        for index in range(3):
            files[f"{folder}/intact{index}.png"] = _base(rng, "PNG")
    for index in range(MUTANTS):
        image_format = rng.choice(sorted(FORMATS))
        files[f"{folders[index % 4]}/mutant{index:03d}.{FORMATS[image_format][0]}"] = _mutant(rng, image_format)
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return files


def test_mutated_images_never_abort_validation_and_every_file_is_accounted_for(tmp_path: Path):
    files = _fuzz_dataset(tmp_path / "data")
    data = DataConfig(root=str(tmp_path / "data"), max_image_pixels=4_000_000, decode_timeout_seconds=30)
    result = run(ValidateConfig(data=data, work_dir=str(tmp_path / "work"), workers=2))
    report = read_report(result.report_path).set_index("path")
    assert sorted(report.index) == sorted(files), "one row per file, none missing, none extra"
    assert sum(result.statuses.values()) == len(files)
    quarantined = report[report.status == "quarantined"]
    assert (quarantined.reason != "").all()
    for path in quarantined.index:
        assert (Path(result.quarantine_dir) / f"{path}.reason.txt").is_file()
    usable = report[report.status != "quarantined"]
    assert all(usable.sha256[path] == hashlib.sha256(files[path]).hexdigest() for path in usable.index)
    assert (usable.width.astype(int) > 0).all() and (usable.height.astype(int) > 0).all()
    # The mutants reach the failures that used to abort the run: exceptions beyond OSError,
    # SyntaxError and ValueError, from the decoders and from EXIF handling.
    reasons = " ".join(quarantined.reason)
    assert "normalising failed" in reasons
    assert len(quarantined) > MUTANTS // 4 and len(usable) > MUTANTS // 4
