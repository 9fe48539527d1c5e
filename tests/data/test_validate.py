from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components.config import DataConfig
from components.data.images import inspect_file
from components.data.validate import DatasetError, ValidateConfig, read_report, run


def _image(size: int = 32, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def _dataset(root: Path, per_class: int = 3) -> Path:
    for split_index, split in enumerate(("train", "test")):
        for class_index, name in enumerate(("FAKE", "REAL")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                _image(seed=split_index * 1000 + class_index * 100 + index).save(folder / f"{index}.png")
    return root


def _validate(root: Path, tmp_path: Path, **data) -> tuple:
    result = run(ValidateConfig(data=DataConfig(root=str(root), **data), work_dir=str(tmp_path / "work"), workers=1))
    report = read_report(result.report_path).set_index("path")
    return result, report


def test_unusable_files_are_quarantined_with_reasons_and_never_deleted(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    folder = root / "train" / "REAL"
    jpeg = io.BytesIO()
    _image(64).save(jpeg, format="JPEG")
    bad = {
        "zero.jpg": b"",
        "truncated.jpg": jpeg.getvalue()[:300],
        "page.png": b"<html>not an image</html>",
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    Image.new("RGB", (100, 100)).save(folder / "bomb.png")  # 10,000 px, above the cap below
    Image.fromarray(np.zeros((8, 8), dtype=np.uint16)).save(folder / "sixteen_bit.png")
    result, report = _validate(root, tmp_path, max_image_pixels=5_000)
    reasons = {name: report.loc[f"train/REAL/{name}", "reason"] for name in [*bad, "bomb.png", "sixteen_bit.png"]}
    assert reasons["zero.jpg"] == "zero-byte file"
    assert "truncated" in reasons["truncated.jpg"].lower()
    assert "not an image" in reasons["page.png"]
    assert reasons["bomb.png"].startswith("decompression bomb")
    assert "unsupported mode" in reasons["sixteen_bit.png"]
    quarantine = Path(result.quarantine_dir) / "train" / "REAL"
    for name in reasons:
        assert (folder / name).exists(), "the source file must stay where it was"
        assert (quarantine / name).read_bytes() == (folder / name).read_bytes()
        assert (quarantine / f"{name}.reason.txt").read_text().strip() == reasons[name]
    assert result.statuses["quarantined"] == 5
    assert result.usable["train"]["REAL"] == 3


def test_odd_modes_are_normalised_not_rejected(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    folder = root / "train" / "FAKE"
    base = _image(seed=42)
    base.convert("CMYK").save(folder / "cmyk.jpg")
    base.convert("L").save(folder / "gray.png")
    base.convert("P").save(folder / "palette.png", transparency=0)
    base.convert("RGBA").save(folder / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    base.crop((0, 0, 32, 16)).save(folder / "rotated.jpg", exif=exif)
    _, report = _validate(root, tmp_path)
    normalised = report.loc[[f"train/FAKE/{name}" for name in ("cmyk.jpg", "gray.png", "palette.png", "alpha.png", "rotated.jpg")]]
    assert (normalised.status == "ok").all()
    assert list(normalised.normalised) == [
        "CMYK-to-RGB",
        "L-to-RGB",
        "P-alpha-on-white+RGBA-to-RGB",
        "RGBA-alpha-on-white+RGBA-to-RGB",
        "exif-orientation-6",
    ]


def test_exif_orientation_is_applied_to_pixels(tmp_path: Path):
    from components.data.images import decode_rgb

    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    _image().crop((0, 0, 32, 16)).save(path, exif=exif)
    image, _ = decode_rgb(path.read_bytes(), max_pixels=10_000)
    assert image.size == (16, 32) and image.mode == "RGB"


def test_duplicates_and_train_test_leakage_are_flagged(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    shutil.copy(root / "train" / "REAL" / "0.png", root / "train" / "REAL" / "copy.png")
    shutil.copy(root / "test" / "FAKE" / "1.png", root / "train" / "FAKE" / "leaked.png")
    shutil.copy(root / "train" / "REAL" / "2.png", root / "train" / "FAKE" / "both_classes.png")
    result, report = _validate(root, tmp_path)
    assert report.loc["train/REAL/copy.png", "status"] == "duplicate"
    assert report.loc["train/REAL/copy.png", "reason"] == "duplicate of train/REAL/0.png"
    assert report.loc["train/FAKE/leaked.png", "status"] == "leak"
    assert report.loc["test/FAKE/1.png", "status"] == "ok", "the test copy stays in the test set"
    assert report.loc["train/FAKE/both_classes.png", "status"] == "conflict"
    assert report.loc["train/REAL/2.png", "status"] == "conflict"
    assert result.usable["train"] == {"FAKE": 3, "REAL": 2}


def test_report_has_one_row_per_file_with_its_facts(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    _, report = _validate(root, tmp_path)
    assert len(report) == 12
    row = report.loc["train/FAKE/0.png"]
    assert (row.split, row.class_name, row.format, row.width, row.height) == ("train", "FAKE", "PNG", 32, 32)
    assert len(row.sha256) == 64 and row.bytes > 0


def test_empty_class_after_validation_fails_clearly(tmp_path: Path):
    root = _dataset(tmp_path / "data", per_class=1)
    (root / "test" / "REAL" / "0.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"No usable images left in test/REAL"):
        _validate(root, tmp_path)


def test_missing_class_folder_names_the_expected_layout(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    shutil.rmtree(root / "test" / "FAKE")
    with pytest.raises(DatasetError, match=r"Missing class folder .*test/FAKE"):
        _validate(root, tmp_path)


def test_fingerprint_depends_on_content_not_names(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    first, _ = _validate(root, tmp_path)
    (root / "train" / "REAL" / "0.png").rename(root / "train" / "REAL" / "renamed.png")
    renamed, _ = _validate(root, tmp_path)
    _image(seed=999).save(root / "train" / "REAL" / "new.png")
    grown, _ = _validate(root, tmp_path)
    assert first.dataset_fingerprint == renamed.dataset_fingerprint != grown.dataset_fingerprint


def test_parallel_workers_give_the_same_report(tmp_dataset_copy: Path, tmp_path: Path):
    serial = run(ValidateConfig(data=DataConfig(root=str(tmp_dataset_copy)), work_dir=str(tmp_path / "a"), workers=1))
    parallel = run(ValidateConfig(data=DataConfig(root=str(tmp_dataset_copy)), work_dir=str(tmp_path / "b"), workers=2))
    columns = ["split", "class_name", "path", "status", "reason", "sha256"]
    assert pd.read_csv(serial.report_path)[columns].equals(pd.read_csv(parallel.report_path)[columns])
    assert serial.dataset_fingerprint == parallel.dataset_fingerprint


@pytest.fixture
def tmp_dataset_copy(tiny_dataset: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_dataset, tmp_path / "copy"))


def _dds_with_unknown_pixel_format() -> bytes:
    """A DDS header whose pixel format flags (8) make Pillow raise NotImplementedError."""
    header = struct.pack("<3I", 0x1007, 4, 4) + bytes(56) + struct.pack("<4I", 32, 8, 0, 0)
    return b"DDS " + struct.pack("<I", 124) + header + bytes(120 - len(header)) + bytes(64)


def _png_with_broken_exif() -> bytes:
    """A valid 1x1 PNG whose eXIf block is not TIFF: getexif raises SyntaxError."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG", exif=b"not a tiff block")
    return buffer.getvalue()


def _rgba_png_header_only(width: int, height: int) -> bytes:
    """A large all-zero RGBA PNG written row by row, never held as pixels here."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor, row, parts = zlib.compressobj(9), bytes(1 + 4 * width), []
    parts = [compressor.compress(row) for _ in range(height)] + [compressor.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def test_a_format_outside_the_accepted_ones_and_any_exif_exception_become_the_files_reason(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    folder = root / "train" / "FAKE"
    (folder / "texture.dds").write_bytes(_dds_with_unknown_pixel_format())
    (folder / "exif.png").write_bytes(_png_with_broken_exif())
    result, report = _validate(root, tmp_path)
    assert report.loc["train/FAKE/texture.dds", "status"] == "quarantined"
    # Pillow's DDS decoder would raise NotImplementedError here; the format is refused before it runs.
    assert report.loc["train/FAKE/texture.dds", "reason"].startswith("not an image in an accepted format (JPEG, PNG")
    assert report.loc["train/FAKE/exif.png", "status"] == "quarantined"
    assert "SyntaxError: not a TIFF file" in report.loc["train/FAKE/exif.png", "reason"]
    assert result.usable["train"]["FAKE"] == 3


def test_special_files_and_vanished_files_are_quarantined_not_fatal(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    folder = root / "train" / "REAL"
    os.mkfifo(folder / "pipe.png")  # opening it for reading would block forever
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    _, report = _validate(root, tmp_path)
    assert report.loc["train/REAL/pipe.png", "reason"] == "not a regular file (a FIFO)"
    assert report.loc["train/REAL/dangling.png", "reason"].startswith("symbolic link")
    # A file listed, then removed before it is read, names the error instead of stopping the run.
    (folder / "removed.png").write_bytes(b"soon gone")
    os.remove(folder / "removed.png")
    row = inspect_file(("train", "REAL", str(folder / "removed.png"), "train/REAL/removed.png", 1000))
    assert row["status"] == "quarantined" and row["reason"] == "unreadable: FileNotFoundError: No such file or directory"


def test_symlinks_are_refused_and_nothing_outside_the_root_is_read(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secrets.env").write_bytes(b"AWS_SECRET_ACCESS_KEY=hunter2\n")
    _image(seed=77).save(outside / "photo.png")
    folder = root / "train" / "REAL"
    (folder / "secret.png").symlink_to(outside / "secrets.env")
    (folder / "photo.png").symlink_to(outside / "photo.png")
    (folder / "more").symlink_to(outside, target_is_directory=True)
    result, report = _validate(root, tmp_path)
    for name in ("secret.png", "photo.png", "more"):
        assert report.loc[f"train/REAL/{name}", "status"] == "quarantined"
        assert report.loc[f"train/REAL/{name}", "reason"].startswith("symbolic link: refused")
    assert not any(path.startswith("train/REAL/more/") for path in report.index), "a linked folder is never walked"
    copied = [path for path in Path(result.quarantine_dir).rglob("*") if path.is_file()]
    assert all(b"hunter2" not in path.read_bytes() for path in copied)
    assert not (Path(result.quarantine_dir) / "train" / "REAL" / "secret.png").exists()
    assert result.usable["train"]["REAL"] == 3


def test_a_linked_class_folder_stops_before_reading_anything(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    shutil.move(root / "test" / "FAKE", tmp_path / "elsewhere")
    (root / "test" / "FAKE").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(DatasetError, match=r"test/FAKE is a symbolic link; refused"):
        _validate(root, tmp_path)


def test_names_that_are_not_utf8_are_recorded_byte_for_byte(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    folder = os.fsencode(root / "train" / "REAL")
    _image(seed=55).save(os.fsdecode(folder + b"/caf\xe9.png"))
    with open(os.fsdecode(folder + b"/bad\xff.png"), "wb") as handle:
        handle.write(b"not an image")
    result, report = _validate(root, tmp_path)
    names = {os.fsencode(path): row.status for path, row in report.iterrows()}
    assert names[b"train/REAL/caf\xe9.png"] == "ok" and names[b"train/REAL/bad\xff.png"] == "quarantined"
    assert b"train/REAL/caf\xe9.png" in Path(result.report_path).read_bytes()
    assert os.path.exists(os.fsdecode(os.fsencode(result.quarantine_dir) + b"/train/REAL/bad\xff.png.reason.txt"))


def test_a_file_over_the_memory_budget_is_quarantined_and_the_rest_validated(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    # The review's file: 9000x9000 RGBA, a few hundred kB, 1.6 GB to decode and normalise.
    (root / "train" / "REAL" / "huge.png").write_bytes(_rgba_png_header_only(9000, 9000))
    result, report = _validate(root, tmp_path)
    assert report.loc["train/REAL/huge.png", "status"] == "quarantined"
    assert "out of memory" in report.loc["train/REAL/huge.png", "reason"]
    assert "decode_memory_mb" in report.loc["train/REAL/huge.png", "reason"]
    assert result.statuses == {"ok": 12, "quarantined": 1}


def test_tightening_a_verdict_setting_rechecks_cached_rows(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    Image.new("RGB", (100, 100)).save(root / "train" / "REAL" / "large.png")
    first, report = _validate(root, tmp_path)
    assert report.loc["train/REAL/large.png", "status"] == "ok"
    tightened, report = _validate(root, tmp_path, max_image_pixels=5_000)
    assert report.loc["train/REAL/large.png", "reason"].startswith("decompression bomb")
    assert tightened.inspected == 13, "every row was checked under the new cap"
    again, _ = _validate(root, tmp_path, max_image_pixels=5_000)
    assert again.inspected == 0


def test_a_truncated_or_garbled_report_is_only_a_lost_cache(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    first, _ = _validate(root, tmp_path)
    report_path = Path(first.report_path)
    complete = report_path.read_bytes()
    for damaged in (complete[: len(complete) // 2], complete[:40], b"\x00\xff garbage", b""):
        report_path.write_bytes(damaged)
        again, report = _validate(root, tmp_path)
        assert len(report) == 12 and again.dataset_fingerprint == first.dataset_fingerprint
    assert not list(report_path.parent.glob(".report.csv.*")), "no staging file is left behind"


def test_the_report_estimates_jpeg_quality_and_warns_when_the_classes_differ(tmp_path: Path):
    from components.data.shortcuts import ClassShortcut

    root = _dataset(tmp_path / "data")  # PNG in both classes
    for split in ("train", "test"):
        for index in range(3):
            path = root / split / "REAL" / f"{index}.png"
            Image.open(path).save(path.with_suffix(".jpg"), quality=40 + index)
            path.unlink()
    with pytest.warns(ClassShortcut, match=r"train: format differs between the classes .*FAKE: PNG \(100%\); REAL: JPEG \(100%\)"):
        result, report = _validate(root, tmp_path)
    assert [report.loc[f"train/REAL/{index}.jpg", "jpeg_quality"] for index in range(3)] == ["40", "41", "42"]
    assert report.loc["train/FAKE/0.png", "jpeg_quality"] == ""
    assert any(line.startswith("test: jpeg_quality differs") for line in result.class_differences)
    assert (Path(result.report_path).parent / "class_profile.csv").is_file()
