"""The one TFRecord schema, shared by the shard writer and the tf.data reader.

Images are stored encoded (as the manifest says) and decoded on read; pixels stay in [0, 255]
because the model carries its own preprocessing, so a served model takes raw pixels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import tensorflow as tf

from components import degrade

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
SOURCE_KEY = "image/source"
FEATURE_SPEC = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    SOURCE_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
}
# What training and evaluation read: the source path is for people, and parsing it costs.
READ_SPEC = {key: FEATURE_SPEC[key] for key in (IMAGE_KEY, LABEL_KEY)}
MANIFEST_NAME = "manifest.json"
# Bounded, so memory stays flat however large the dataset grows.
SHUFFLE_BUFFER = 2048


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def serialize(encoded_image: bytes, label: int, source: str) -> bytes:
    feature = {
        IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded_image])),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        SOURCE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode()])),
    }
    # deterministic: proto map order otherwise varies between processes, and so would the shards' bytes.
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def read_manifest(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def is_identity(policy: dict[str, Any]) -> bool:
    return not (policy["rotation_degrees"] or policy["shift_fraction"] or policy["horizontal_flip"])


def affine_transforms(policy: dict[str, Any], batch: tf.Tensor, height: tf.Tensor, width: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Per image, the inverse map (output pixel -> input pixel) of rotation, shift and flip composed
    into one affine matrix, as the 8 numbers ImageProjectiveTransformV3 takes.

    The same math as images.random_affine (the shard-time copies), so live and premade
    augmentation draw from one policy: angle uniform in ±rotation_degrees, shift uniform in
    ±shift_fraction of the side, horizontal flip with probability 1/2.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    angle = tf.random.stateless_uniform([batch], seeds[0], -1.0, 1.0) * (policy["rotation_degrees"] * math.pi / 180.0)
    shift_x = tf.random.stateless_uniform([batch], seeds[1], -1.0, 1.0) * policy["shift_fraction"] * width
    shift_y = tf.random.stateless_uniform([batch], seeds[2], -1.0, 1.0) * policy["shift_fraction"] * height
    flip = tf.ones([batch])
    if policy["horizontal_flip"]:
        flip = tf.where(tf.random.stateless_uniform([batch], seeds[3]) < 0.5, -1.0, 1.0)
    # Pixel centres run from 0 to side - 1, so the zero policy maps every pixel onto itself.
    center_x, center_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    a, b, d, e = flip * cos, sin, -flip * sin, cos
    c = center_x - a * (center_x + shift_x) - b * (center_y + shift_y)
    f = center_y - d * (center_x + shift_x) - e * (center_y + shift_y)
    zeros = tf.zeros([batch])
    return tf.stack([a, b, c, d, e, f, zeros, zeros], axis=1)


def fused_augment(images: tf.Tensor, policy: dict[str, Any], seed: tf.Tensor) -> tf.Tensor:
    """Rotation, shift and flip of a uint8 batch as one bilinear warp, with 'nearest' fill as the
    origin's ImageDataGenerator had. Three Keras Random* layers warp three times in float32;
    this samples each output pixel once."""
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    return _bilinear_warp(images, affine_transforms(policy, shape[0], height, width, seed))


# XLA fuses the gathers and the blend into one loop: about 5x the rate of the unfused graph and
# 3x tf.raw_ops.ImageProjectiveTransformV3 on 2 CPU cores (bench/README.md), and tf.data runs it.
@tf.function(jit_compile=True)
def _bilinear_warp(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    rows, cols = tf.meshgrid(tf.range(tf.cast(height, tf.float32)), tf.range(tf.cast(width, tf.float32)), indexing="ij")
    cols, rows = tf.reshape(cols, [1, -1]), tf.reshape(rows, [1, -1])
    a, b, c, d, e, f = (transforms[:, index : index + 1] for index in range(6))
    # Clamping the source coordinates is the 'nearest' fill: outside pixels repeat the edge.
    source_x = tf.clip_by_value(a * cols + b * rows + c, 0.0, tf.cast(width - 1, tf.float32))
    source_y = tf.clip_by_value(d * cols + e * rows + f, 0.0, tf.cast(height - 1, tf.float32))
    left, top = tf.floor(source_x), tf.floor(source_y)
    weight_x, weight_y = (source_x - left)[..., None], (source_y - top)[..., None]
    left, top = tf.cast(left, tf.int32), tf.cast(top, tf.int32)
    right, bottom = tf.minimum(left + 1, width - 1), tf.minimum(top + 1, height - 1)
    pixels = tf.reshape(images, [shape[0], -1, shape[3]])

    def sample(row: tf.Tensor, col: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.gather(pixels, row * width + col, batch_dims=1), tf.float32)

    upper = sample(top, left) * (1.0 - weight_x) + sample(top, right) * weight_x
    lower = sample(bottom, left) * (1.0 - weight_x) + sample(bottom, right) * weight_x
    blended = upper * (1.0 - weight_y) + lower * weight_y
    return tf.reshape(tf.cast(tf.round(blended), images.dtype), shape)


def make_dataset(
    manifest_path: str | Path, split: str, batch_size: int, training: bool = False, seed: int = 42, dtype: tf.DType = tf.float32
) -> tf.data.Dataset:
    """Batches of (`dtype` pixels in [0, 255], float32 labels of shape [1]).

    Training shuffles files and records and applies the manifest's augmentation unless it was
    pre-materialised at shard time; every other split is read in order, untouched. Pixels stay
    uint8 until the last step, a quarter of the bytes through batch and warp; training asks for
    uint8 out, and the model casts on its own device.
    """
    manifest = read_manifest(manifest_path)
    if split not in manifest["splits"]:
        raise ValueError(f"Unknown split. Expected one of {sorted(manifest['splits'])}. Received: split={split!r}")
    batches = _decoded_batches(manifest, Path(manifest_path).parent, split, batch_size, training, seed)
    policy = manifest["augmentation"]["policy"]
    if training and manifest["augmentation"]["applied"] == "live" and not is_identity(policy):
        # One random seed pair per batch; it differs every epoch, and stays reproducible per seed.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        batches = tf.data.Dataset.zip(batches, seeds).map(
            lambda batch, pair: (fused_augment(batch[0], policy, pair), batch[1]), num_parallel_calls=tf.data.AUTOTUNE
        )
    if training and degrade.is_active(policy):
        batches = _with_degradation(batches, policy, seed)
    if dtype != tf.uint8:
        batches = batches.map(lambda images, labels: (tf.cast(images, dtype), labels), num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def _with_degradation(batches: tf.data.Dataset, policy: dict[str, Any], seed: int) -> tf.data.Dataset:
    """components/degrade.py's JPEG and blur augmentation, on the reader's CPU threads."""
    seeds = tf.data.Dataset.random(seed=seed + 7, rerandomize_each_iteration=True).batch(2)

    def apply(images: tf.Tensor, labels: tf.Tensor, pair: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        degraded = tf.numpy_function(lambda batch, key: degrade.degrade_batch(batch, policy, key), [images, pair], tf.uint8)
        return tf.ensure_shape(degraded, images.shape), labels

    return tf.data.Dataset.zip(batches, seeds).map(lambda batch, pair: apply(*batch, pair), num_parallel_calls=tf.data.AUTOTUNE)


def _decoded_batches(manifest: dict[str, Any], folder: Path, split: str, batch_size: int, training: bool, seed: int) -> tf.data.Dataset:
    paths = [str(folder / name) for name in manifest["splits"][split]["files"]]
    size = manifest["image_size"]
    # Only training shards of `fit: crop` hold images larger than the model (components/fit.py).
    random_crop = training and manifest.get("fit") == "crop"
    files = tf.data.Dataset.from_tensor_slices(paths)
    if training:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    records = files.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(paths), 8), num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training
    )
    if training:
        records = records.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)

    def parse(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        example = tf.io.parse_single_example(serialized, READ_SPEC)
        image = tf.io.decode_image(example[IMAGE_KEY], channels=3, expand_animations=False)
        image = tf.image.random_crop(image, [size, size, 3], seed=seed) if random_crop else tf.ensure_shape(image, [size, size, 3])
        return image, tf.reshape(tf.cast(example[LABEL_KEY], tf.float32), [1])

    # Training takes records in whatever order they decode: shuffled anyway, and no head-of-line wait.
    batches = records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training).batch(batch_size)
    # A known length gives Keras its step count up front (progress, no "ran out of data").
    return batches.apply(tf.data.experimental.assert_cardinality(math.ceil(manifest["splits"][split]["count"] / batch_size)))
