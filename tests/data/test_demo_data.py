from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.data import demo_data


def _pixels(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path).convert("L"), dtype=np.float32) for path in sorted(folder.glob("t*.png"))])


def test_layout_matches_the_public_sets(tiny_dataset: Path):
    for split in ("train", "test"):
        for name in ("REAL", "FAKE"):
            assert len(list((tiny_dataset / split / name).glob(f"{split}_*.png"))) == (24 if split == "train" else 6)


def test_fakes_carry_the_period_two_upsampling_artifact(tiny_dataset: Path):
    def nyquist_energy(images: np.ndarray) -> float:
        spectrum = np.abs(np.fft.fft2(images - images.mean(axis=(1, 2), keepdims=True)))
        half = images.shape[1] // 2
        return float(np.mean(spectrum[:, half, :] + spectrum[:, :, half]))

    real, fake = _pixels(tiny_dataset / "train" / "REAL"), _pixels(tiny_dataset / "train" / "FAKE")
    assert nyquist_energy(fake) > 2 * nyquist_energy(real)


def test_no_image_is_shared_between_train_and_test(tiny_dataset: Path):
    def hashes(split: str) -> set[str]:
        return {hashlib.sha256(path.read_bytes()).hexdigest() for path in (tiny_dataset / split).rglob(f"{split}_*.png")}

    assert not hashes("train") & hashes("test")


def test_same_config_is_reused_and_foreign_folders_are_never_replaced(tmp_path: Path):
    config = demo_data.DemoDataConfig(out_dir=str(tmp_path / "demo"), train_per_class=4, test_per_class=2, include_defects=False)
    demo_data.run(config)
    stamp = (tmp_path / "demo" / "train" / "REAL" / "train_real_00000.png").stat().st_mtime_ns
    demo_data.run(config)
    assert (tmp_path / "demo" / "train" / "REAL" / "train_real_00000.png").stat().st_mtime_ns == stamp
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="Refusing"):
        demo_data.run(config.model_copy(update={"out_dir": str(precious)}))
    assert (precious / "holiday.jpg").read_bytes() == b"keep me"
