"""Synthetic source images for the benchmarks: crops of the photographs that ship with
scikit-learn, so JPEG sizes and decode costs look like photos, not noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images


def write_jpegs(root: Path, count: int, size: int = 256, seed: int = 0, split: str = "train") -> Path:
    """`count` distinct size×size JPEGs under <root>/<split>/{REAL,FAKE}/, half per class.

    Every crop differs (random position, scale and a small colour gain), so validation sees no
    duplicates; the class carries no signal, which a throughput benchmark does not need.
    """
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(photo) for photo in load_sample_images().images]
    for label in ("REAL", "FAKE"):
        (root / split / label).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        photo = photos[index % len(photos)]
        side = int(rng.integers(size // 2, min(photo.size)))
        left = int(rng.integers(0, photo.width - side + 1))
        top = int(rng.integers(0, photo.height - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
        gain = rng.uniform(0.9, 1.1, size=3)
        pixels = np.clip(np.asarray(crop, dtype=np.float32) * gain, 0, 255).astype(np.uint8)
        label = "REAL" if index % 2 else "FAKE"
        Image.fromarray(pixels).save(root / split / label / f"{split}_{index:06d}.jpg", quality=90)
    return root


def make_dataset_folder(root: Path, train_count: int, test_count: int, size: int = 256, seed: int = 0) -> Path:
    """<root>/{train,test}/{REAL,FAKE}: the layout the pipeline's validate stage expects."""
    write_jpegs(root, train_count, size, seed, "train")
    write_jpegs(root, test_count, size, seed + 1, "test")
    return root


def shard_folder(root: Path, work_dir: Path, data: dict, augment: dict | None = None, workers: int = 0) -> tuple[str, int, float]:
    """Validate and shard `root` through the pipeline's own stages.

    Validation is cached beside `root` (its report is reused by every later call); the shards go
    under `work_dir`. Returns (manifest path, images written, seconds of the shard stage alone).
    """
    import time

    from components.config import AugmentConfig, DataConfig
    from components.data import shard, validate

    data_cfg = DataConfig(root=str(root), **data)
    validated = validate.run(validate.ValidateConfig(data=data_cfg, work_dir=str(root.parent / "validation")))
    cfg = shard.ShardConfig(
        data=data_cfg,
        augment=AugmentConfig(**(augment or {})),
        report_path=validated.report_path,
        dataset_fingerprint=validated.dataset_fingerprint,
        work_dir=str(work_dir),
        workers=workers,
    )
    start = time.perf_counter()
    result = shard.run(cfg)
    return result.manifest_path, sum(result.counts.values()), time.perf_counter() - start
