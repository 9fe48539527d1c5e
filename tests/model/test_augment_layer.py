"""The in-model augmentation layer: the same affine math as the shard-time copies and the tf.data warp."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from PIL import Image

from components.data import images
from components.data.affine import inverse_affine
from components.training.augment import RandomAffine, warp

# (angle in radians, shift x, shift y in pixels, flip): the policy's corners and an everyday draw.
DRAWS = [(0.0, 0.0, 0.0, 1.0), (0.3, 4.5, -2.25, -1.0), (-0.35, -6.4, 6.4, 1.0), (0.1, 1.3, 0.7, -1.0)]


def _photo(size: int = 48) -> np.ndarray:
    """Smooth content, as photos are: neighbouring pixels differ little, so bilinear rounding shows as ±1."""
    coarse = np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("draw", DRAWS)
def test_layer_warp_agrees_with_the_shard_time_copies(draw):
    pixels = _photo()
    coefficients = inverse_affine(*draw, pixels.shape[1], pixels.shape[0], math)
    pillow = np.asarray(images.affine_warp(Image.fromarray(pixels), coefficients)).astype(int)
    layer = keras.ops.convert_to_numpy(warp(pixels[None].astype("float32"), tuple(np.array([value]) for value in coefficients)))[0]
    # Same geometry to the pixel: Pillow truncates the blended value where the warps round it, so
    # every pixel is equal or the layer's is one grey level above (any offset would show as more).
    assert set(np.unique(layer.astype(int) - pillow)) <= {0, 1}


@pytest.mark.parametrize("draw", DRAWS)
def test_layer_warp_matches_the_tf_data_warp(draw):
    tf = pytest.importorskip("tensorflow") if keras.backend.backend() != "tensorflow" else __import__("tensorflow")
    from components.data.tfdata import _bilinear_warp

    pixels = _photo()[None]
    coefficients = inverse_affine(*draw, pixels.shape[2], pixels.shape[1], math)
    transforms = tf.constant([[*coefficients, 0.0, 0.0]], tf.float32)
    reader = _bilinear_warp(tf.constant(pixels), transforms).numpy()
    layer = keras.ops.convert_to_numpy(warp(pixels.astype("float32"), tuple(np.array([value], "float32") for value in coefficients)))
    assert np.abs(reader.astype(int) - layer.astype(int)).max() <= 1


def test_layer_is_identity_outside_training_and_augments_in_training():
    layer = RandomAffine(rotation_degrees=20, shift_fraction=0.2, horizontal_flip=True, seed=1)
    batch = np.stack([_photo(32)] * 4).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(batch, training=False)), batch)
    trained = keras.ops.convert_to_numpy(layer(batch, training=True))
    assert trained.shape == batch.shape and not np.array_equal(trained, batch)
    assert np.array_equal(trained, np.round(trained)) and trained.min() >= 0 and trained.max() <= 255


def test_layer_survives_save_and_load(tmp_path):
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, RandomAffine(rotation_degrees=10, shift_fraction=0.1, horizontal_flip=True, name="augment")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("augment").get_config()["rotation_degrees"] == 10.0
