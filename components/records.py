"""The one TFRecord schema, shared by the shard writer and the tf.data reader.

Images are stored encoded (as the manifest says) and decoded on read; pixels stay in [0, 255]
because the model carries its own preprocessing, so a served model takes raw pixels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
SOURCE_KEY = "image/source"
FEATURE_SPEC = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    SOURCE_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
}
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
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def read_manifest(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def augmentation_layers(policy: dict[str, Any], seed: int) -> keras.Sequential:
    """The live augmentation; fill 'nearest' as the origin's ImageDataGenerator did."""
    layers = [
        keras.layers.RandomRotation(policy["rotation_degrees"] / 360.0, fill_mode="nearest", seed=seed),
        keras.layers.RandomTranslation(policy["shift_fraction"], policy["shift_fraction"], fill_mode="nearest", seed=seed + 1),
    ]
    if policy["horizontal_flip"]:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 2))
    return keras.Sequential(layers, name="augmentation")


def make_dataset(manifest_path: str | Path, split: str, batch_size: int, training: bool = False, seed: int = 42) -> tf.data.Dataset:
    """Batches of (float32 pixels in [0, 255], float32 labels of shape [1]).

    Training shuffles files and records and applies the manifest's augmentation unless it was
    pre-materialised at shard time; every other split is read in order, untouched.
    """
    manifest = read_manifest(manifest_path)
    if split not in manifest["splits"]:
        raise ValueError(f"Unknown split. Expected one of {sorted(manifest['splits'])}. Received: split={split!r}")
    folder = Path(manifest_path).parent
    paths = [str(folder / name) for name in manifest["splits"][split]["files"]]
    size = manifest["image_size"]
    files = tf.data.Dataset.from_tensor_slices(paths)
    if training:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    records = files.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(paths), 8), num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training
    )
    if training:
        records = records.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)

    def parse(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        example = tf.io.parse_single_example(serialized, FEATURE_SPEC)
        image = tf.io.decode_image(example[IMAGE_KEY], channels=3, expand_animations=False)
        image = tf.ensure_shape(image, [size, size, 3])
        return tf.cast(image, tf.float32), tf.reshape(tf.cast(example[LABEL_KEY], tf.float32), [1])

    batches = records.map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    # A known length gives Keras its step count up front (progress, no "ran out of data").
    batches = batches.apply(tf.data.experimental.assert_cardinality(math.ceil(manifest["splits"][split]["count"] / batch_size)))
    augmentation = manifest["augmentation"]
    if training and augmentation["applied"] == "live":
        augment = augmentation_layers(augmentation["policy"], seed)
        batches = batches.map(lambda images, labels: (augment(images, training=True), labels), num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)
