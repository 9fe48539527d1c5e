from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components.config import DataConfig
from components.validate import DatasetError, ValidateConfig, run


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
    report = pd.read_csv(result.report_path, keep_default_na=False).set_index("path")
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
    from components.images import load_rgb

    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    _image().crop((0, 0, 32, 16)).save(path, exif=exif)
    image, _ = load_rgb(path, max_pixels=10_000)
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
