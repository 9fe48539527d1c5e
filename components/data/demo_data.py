"""A small, honest stand-in for CIFAKE-like datasets, made offline from photographs that ship
with scikit-learn.

REAL images are crops of real photographs at random scales. FAKE images are crops of the same
kind, passed through a simulated generator: downsampling followed by a stride-2 transposed
convolution with an imperfect kernel, which leaves the periodic "checkerboard" spectrum that
GAN and diffusion decoders leave (Zhang et al., AutoGAN, 2019). The class signal is that
artifact, not the content. Train and test crops come from disjoint regions of each photograph,
so no pixel of a test image was seen in training.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import Field
from scipy.ndimage import convolve
from sklearn.datasets import load_sample_images

from components.cli_support import component_main
from components.config import Strict

# The left share of each photograph's width feeds train, the rest feeds test.
TRAIN_REGION_SHARE = 0.7
GENERATOR_COUNT = 4  # several "generators", so the detector can't memorise one kernel
MARKER = "DEMO_DATA.json"


class DemoDataConfig(Strict):
    out_dir: str = "work/demo-data"
    train_per_class: int = Field(800, ge=4)
    test_per_class: int = Field(200, ge=2)
    image_size: int = Field(64, ge=32)
    artifact_strength: float = Field(1.0, ge=0, le=2)
    seed: int = 0
    # Corrupt, odd-mode and duplicate files, so a demo run shows validation at work.
    include_defects: bool = True


class DemoDataResult(Strict):
    root: str
    counts: dict[str, dict[str, int]]
    defects: list[str]


def run(cfg: DemoDataConfig) -> DemoDataResult:
    """Write <out_dir>/{train,test}/{REAL,FAKE}/*.png, or reuse what an identical config wrote.

    Only a folder this command made (it carries MARKER) is ever replaced: pointing --out-dir at
    a real dataset by mistake fails instead of deleting it.
    """
    root = Path(cfg.out_dir)
    marker = root / MARKER
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous["config"] == cfg.model_dump(mode="json"):
            return DemoDataResult.model_validate(previous["result"])
        shutil.rmtree(root)
    elif root.exists() and any(root.iterdir()):
        raise FileExistsError(f"Refusing to write demo data into a folder it did not make. Received: out_dir={str(root)!r}")
    rng = np.random.default_rng(cfg.seed)
    kernels = [_generator_kernel(rng, cfg.artifact_strength) for _ in range(GENERATOR_COUNT)]
    photos = [np.asarray(photo, dtype=np.float32) for photo in load_sample_images().images]
    counts: dict[str, dict[str, int]] = {}
    for split, per_class in (("train", cfg.train_per_class), ("test", cfg.test_per_class)):
        counts[split] = {"REAL": per_class, "FAKE": per_class}
        for label in ("REAL", "FAKE"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(per_class):
                crop = _random_crop(photos[index % len(photos)], split, cfg.image_size, rng)
                if label == "FAKE":
                    crop = _simulated_generator(crop, kernels[rng.integers(GENERATOR_COUNT)])
                Image.fromarray(_to_uint8(crop)).save(folder / f"{split}_{label.lower()}_{index:05d}.png")
    defects = _write_defects(root, cfg.image_size, rng) if cfg.include_defects else []
    result = DemoDataResult(root=str(root), counts=counts, defects=defects)
    marker.write_text(json.dumps({"config": cfg.model_dump(mode="json"), "result": result.model_dump(mode="json")}, indent=2))
    return result


def _random_crop(photo: np.ndarray, split: str, size: int, rng: np.random.Generator) -> np.ndarray:
    height, width, _ = photo.shape
    boundary = int(width * TRAIN_REGION_SHARE)
    left, right = (0, boundary) if split == "train" else (boundary, width)
    side = int(size * rng.uniform(1.0, min(2.5, (right - left) / size, height / size)))
    x = rng.integers(left, right - side + 1)
    y = rng.integers(0, height - side + 1)
    crop = Image.fromarray(_to_uint8(photo[y : y + side, x : x + side]))
    crop = crop.resize((size, size), Image.Resampling.LANCZOS)
    array = np.asarray(crop, dtype=np.float32)
    return array[:, ::-1] if rng.random() < 0.5 else array


def _generator_kernel(rng: np.random.Generator, strength: float) -> np.ndarray:
    """A 4×4 stride-2 upsampling kernel: bilinear plus a perturbation of the given strength."""
    bilinear = np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])
    kernel = bilinear + strength * rng.normal(0.0, 0.25, size=(4, 4)) * bilinear.max()
    # Keep the average gain at 1; the four polyphase sums now differ, which is the checkerboard.
    return kernel * (4.0 / kernel.sum())


def _simulated_generator(crop: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    height, width, channels = crop.shape
    low = crop.reshape(height // 2, 2, width // 2, 2, channels).mean(axis=(1, 3))
    upsampled = np.zeros_like(crop)
    upsampled[::2, ::2] = low  # zero insertion, then the kernel: a transposed convolution
    return np.stack([convolve(upsampled[..., c], kernel, mode="wrap") for c in range(channels)], axis=-1)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _write_defects(root: Path, size: int, rng: np.random.Generator) -> list[str]:
    """Files a real scrape contains: each must be quarantined, normalised or flagged, never lost."""
    real, fake, test_real = root / "train" / "REAL", root / "train" / "FAKE", root / "test" / "REAL"
    photo = Image.fromarray(_to_uint8(rng.uniform(0, 255, size=(size, size, 3))))
    jpeg = io.BytesIO()
    photo.save(jpeg, format="JPEG", quality=90)
    written = {
        real / "defect_zero_byte.jpg": b"",
        real / "defect_truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        fake / "defect_not_an_image.png": b"<html>404 Not Found</html>",
    }
    for path, data in written.items():
        path.write_bytes(data)
    Image.new("1", (10_000, 10_000)).save(fake / "defect_decompression_bomb.png")  # 100 Mpx > cap
    photo.convert("CMYK").save(real / "defect_cmyk.jpg", quality=95)
    photo.convert("L").save(real / "defect_grayscale.png")
    photo.convert("P").save(fake / "defect_palette.png", transparency=0)
    shutil.copy(next(iter(sorted(real.glob("train_*.png")))), real / "defect_duplicate.png")
    shutil.copy(next(iter(sorted(test_real.glob("test_*.png")))), real / "defect_leaked_from_test.png")
    return sorted(path.name for path in root.rglob("defect_*"))


def main(argv: list[str] | None = None) -> None:
    component_main("detector demo-data", __doc__, DemoDataConfig, run, argv)


if __name__ == "__main__":
    main()
