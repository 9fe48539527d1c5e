"""Live augmentation inside the model: the policy's rotation, shift and flip as one Keras layer.

Written on keras.ops only, so it compiles into the train step on every backend and runs on the
accelerator, and the host only reads and decodes. It samples each output pixel once, bilinearly,
with 'nearest' fill as the origin's ImageDataGenerator had, and draws its parameters as the
shard-time copies and the tf.data warp do (components/data/affine.py). Inactive outside training, so
a served model is unchanged by it.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from components.data.affine import draw_ranges, inverse_affine


@keras.saving.register_keras_serializable(package="detector")
class RandomAffine(keras.layers.Layer):
    """Per image: angle uniform in ±rotation_degrees, shift uniform in ±shift_fraction of the side,
    horizontal flip with probability 1/2. Computes in float32 (coordinates need more than a
    bfloat16 mantissa at 224 px) and returns whole pixel values, as the uint8 warps do."""

    def __init__(
        self,
        rotation_degrees: float = 0.0,
        shift_fraction: float = 0.0,
        horizontal_flip: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.policy = {
            "rotation_degrees": float(rotation_degrees),
            "shift_fraction": float(shift_fraction),
            "horizontal_flip": bool(horizontal_flip),
        }
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        return warp(images, self.transforms(ops.shape(images)[0], images.shape[2], images.shape[1]))

    def transforms(self, batch, width: int, height: int) -> tuple[Any, ...]:
        max_angle, max_x, max_y = draw_ranges(self.policy, width, height)

        def uniform(limit: float):
            return keras.random.uniform((batch,), -1.0, 1.0, seed=self.seed_generator) * limit

        angle, shift_x, shift_y = uniform(max_angle), uniform(max_x), uniform(max_y)
        flip = ops.ones((batch,))
        if self.policy["horizontal_flip"]:
            flip = ops.where(keras.random.uniform((batch,), seed=self.seed_generator) < 0.5, -1.0, 1.0)
        return inverse_affine(angle, shift_x, shift_y, flip, float(width), float(height), ops)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.policy, "seed": self.seed}


def warp(images, coefficients: tuple[Any, ...]):
    """Sample a batch (B, H, W, C) at the affine map's source points, one map per image."""
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    rows, cols = ops.meshgrid(ops.arange(height, dtype="float32"), ops.arange(width, dtype="float32"), indexing="ij")
    rows, cols = ops.reshape(rows, (1, -1)), ops.reshape(cols, (1, -1))
    a, b, c, d, e, f = (ops.expand_dims(ops.cast(value, "float32"), 1) for value in coefficients)
    # Clamping the source coordinates is the 'nearest' fill: outside pixels repeat the edge.
    source_x = ops.clip(a * cols + b * rows + c, 0.0, width - 1.0)
    source_y = ops.clip(d * cols + e * rows + f, 0.0, height - 1.0)
    left, top = ops.floor(source_x), ops.floor(source_y)
    weight_x, weight_y = ops.expand_dims(source_x - left, -1), ops.expand_dims(source_y - top, -1)
    left, top = ops.cast(left, "int32"), ops.cast(top, "int32")
    right, bottom = ops.minimum(left + 1, width - 1), ops.minimum(top + 1, height - 1)
    pixels = ops.reshape(ops.cast(images, "float32"), (-1, height * width, channels))

    def sample(row, col):
        index = ops.expand_dims(row * width + col, -1)
        return ops.take_along_axis(pixels, ops.broadcast_to(index, (*ops.shape(index)[:2], channels)), axis=1)

    upper = sample(top, left) * (1.0 - weight_x) + sample(top, right) * weight_x
    lower = sample(bottom, left) * (1.0 - weight_x) + sample(bottom, right) * weight_x
    blended = upper * (1.0 - weight_y) + lower * weight_y
    return ops.reshape(ops.round(blended), ops.shape(images))
