"""The fused live augmentation draws from the manifest's policy, on uint8, in one warp."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from components.data.schema import is_identity
from components.data.tfdata import fused_augment

SEED = tf.constant([3, 4], tf.int64)
NONE = {"rotation_degrees": 0.0, "shift_fraction": 0.0, "horizontal_flip": False}


def _images(batch: int = 32, size: int = 33) -> tf.Tensor:
    return tf.constant(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)), tf.uint8)


def test_zero_policy_is_the_identity_and_keeps_shape_and_dtype():
    images = _images()
    out = fused_augment(images, NONE, SEED)
    assert out.dtype == tf.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out.numpy(), images.numpy())
    assert is_identity(NONE) and not is_identity({**NONE, "horizontal_flip": True})


def test_flip_policy_mirrors_some_images_and_leaves_the_others():
    images = _images().numpy()
    out = fused_augment(tf.constant(images), {**NONE, "horizontal_flip": True}, SEED).numpy()
    flipped = [np.array_equal(after, before[:, ::-1]) for after, before in zip(out, images)]
    kept = [np.array_equal(after, before) for after, before in zip(out, images)]
    assert all(a or b for a, b in zip(flipped, kept))
    assert 0 < sum(flipped) < len(images)


def test_rotation_turns_about_the_centre_pixel():
    images = _images().numpy()
    out = fused_augment(tf.constant(images), {**NONE, "rotation_degrees": 20.0}, SEED).numpy()
    np.testing.assert_array_equal(out[:, 16, 16], images[:, 16, 16])
    assert not np.array_equal(out, images)


def test_shift_stays_within_the_policy_fraction():
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None], (64, 1, 3))  # pixel value = column
    out = fused_augment(tf.constant(np.stack([ramp] * 32)), {**NONE, "shift_fraction": 0.25}, SEED).numpy()
    moved = out[:, 32, 32, 0].astype(int) - 32
    assert np.abs(moved).max() <= 16 and np.abs(moved).max() > 0


def test_the_same_seed_gives_the_same_warp_and_another_seed_another():
    images = _images()
    policy = {"rotation_degrees": 20.0, "shift_fraction": 0.2, "horizontal_flip": True}
    first = fused_augment(images, policy, SEED).numpy()
    again = fused_augment(images, policy, SEED).numpy()
    other = fused_augment(images, policy, tf.constant([5, 6], tf.int64)).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
