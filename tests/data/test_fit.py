"""data.fit: no resampling at or below the model size, and shards that record the fit they used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from components.config import DataConfig
from components.data import shard, validate
from components.data.fit import fit_image
from components.data.reader import make_dataset


def _noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_crop_and_pad_copy_small_images_pixel_for_pixel():
    image = _noise(20, 24)
    for fit in ("crop", "pad"):
        fitted = np.asarray(fit_image(image, 32, fit))
        assert fitted.shape == (32, 32, 3)
        assert np.array_equal(fitted[4:28, 6:26], np.asarray(image)) and fitted[:4].max() == 0


def test_crop_keeps_a_margin_for_training_and_the_centre_otherwise():
    image = _noise(100, 80)
    assert fit_image(image, 32, "crop", margin=2).size == (64, 64)
    assert np.array_equal(np.asarray(fit_image(image, 32, "crop")), np.asarray(image)[24:56, 34:66])
    assert fit_image(image, 32, "pad").size == (32, 32) and fit_image(image, 32, "resize").size == (32, 32)


def test_shards_record_the_fit_and_training_crops_to_size(tiny_data_config: DataConfig, tmp_path):
    data = tiny_data_config.model_copy(update={"fit": "crop"})
    work_dir = str(tmp_path / "work")
    validated = validate.run(validate.ValidateConfig(data=data, work_dir=work_dir))
    config = shard.ShardConfig(
        data=data, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=work_dir
    )
    result = shard.run(config)
    assert json.loads(Path(result.manifest_path).read_text())["fit"] == "crop"
    resized = shard.ShardConfig(**{**config.model_dump(), "data": tiny_data_config})
    assert shard.shard_key(resized) != result.shard_key
    images, _ = next(iter(make_dataset(result.manifest_path, "train", 4, training=True, dtype=tf.uint8)))
    assert images.shape[1:] == (32, 32, 3)
