"""Input pipeline rates, measured side by side on the same source images.

- ImageDataGenerator.flow_from_directory: the origin's reader, with the same policy and 224 px.
- Keras Random* layers over tf.data: this project's reader before the fused warp.
- The project's reader: live fused augmentation, and premade copies (no live work).
- The decode ceiling: tf.io.decode_jpeg of the same shard images on all cores, nothing else.
- The warp alone, on the same decoded batches: the tf.data warp (tfdata.fused_augment) against
  the in-model RandomAffine layer (components/training/augment.py) compiled as the train step compiles it.

Rates alternate over rounds and the best round counts, so another process's burst on a shared
host lowers one round, not the comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from bench.timing import Stopwatch, images_per_second
from components.data.reader import make_dataset
from components.data.schema import IMAGE_KEY, geometry, read_manifest
from components.data.tfdata import FEATURE_SPEC

BATCH_SIZE = 32


def measure(source_dir: Path, live_manifest: str, premade_manifest: str, policy: dict[str, Any], rounds: int = 4) -> dict[str, float]:
    """Images/s per reader; the keys are the names bench/README.md explains."""
    encoded = _shard_bytes(premade_manifest)
    readers: dict[str, tuple[Callable[[], Any], int]] = {
        "imagedatagenerator": (lambda: _image_data_generator(source_dir, policy, read_manifest(live_manifest).image_size), 320),
        "keras_random_layers": (lambda: _keras_layers(live_manifest, policy), 640),
        "fused_live": (lambda: make_dataset(live_manifest, "train", BATCH_SIZE, training=True, dtype=tf.uint8).repeat(), 1600),
        "premade": (lambda: make_dataset(premade_manifest, "train", BATCH_SIZE, training=True, dtype=tf.uint8).repeat(), 6400),
        "decode_ceiling": (lambda: _decode_only(encoded), 6400),
    }
    best = dict.fromkeys(readers, 0.0)
    for round_index in range(rounds):
        for name, (make, images) in readers.items():
            if name == "keras_random_layers" and round_index:
                continue  # the "before" row: one round is enough to show the gap
            best[name] = max(best[name], images_per_second(make(), images))
    best.update(_warps(live_manifest, policy, rounds))
    return best


def _warps(manifest_path: str, policy: dict[str, Any], rounds: int, repeats: int = 20) -> dict[str, float]:
    """Images/s of each warp alone on one decoded batch, best of `rounds` (after a compiling call)."""
    from components.data.tfdata import fused_augment
    from components.training.augment import RandomAffine

    batch = next(iter(make_dataset(manifest_path, "train", BATCH_SIZE, dtype=tf.uint8)))[0]
    layer = RandomAffine(**geometry(policy), seed=0)
    in_model = tf.function(lambda images: layer(tf.cast(images, tf.float32), training=True), jit_compile=True)
    seed = tf.constant([1, 2], tf.int64)
    warps = {"warp_tf_data": lambda: fused_augment(batch, policy, seed), "warp_in_model_layer": lambda: in_model(batch)}
    best = dict.fromkeys(warps, 0.0)
    for _ in range(rounds):
        for name, warp in warps.items():
            warp().numpy()
            with Stopwatch() as watch:
                for _ in range(repeats):
                    warp().numpy()
            best[name] = max(best[name], repeats * BATCH_SIZE / watch.seconds)
    return best


def _image_data_generator(source_dir: Path, policy: dict[str, Any], size: int):
    # The origin's reader; Keras 3 dropped it, TF 2.21 still ships it under tf.keras.
    generator = tf.keras.preprocessing.image.ImageDataGenerator(
        rotation_range=policy["rotation_degrees"],
        width_shift_range=policy["shift_fraction"],
        height_shift_range=policy["shift_fraction"],
        horizontal_flip=policy["horizontal_flip"],
        fill_mode="nearest",
    )
    return generator.flow_from_directory(str(source_dir), target_size=(size, size), batch_size=BATCH_SIZE, class_mode="binary", seed=0)


def _keras_layers(manifest_path: str, policy: dict[str, Any]) -> tf.data.Dataset:
    augment = keras.Sequential(
        [
            keras.layers.RandomRotation(policy["rotation_degrees"] / 360.0, fill_mode="nearest"),
            keras.layers.RandomTranslation(policy["shift_fraction"], policy["shift_fraction"], fill_mode="nearest"),
            keras.layers.RandomFlip("horizontal"),
        ]
    )
    plain = make_dataset(manifest_path, "train", BATCH_SIZE, training=False).repeat()
    return plain.map(lambda images, labels: (augment(images, training=True), labels), num_parallel_calls=tf.data.AUTOTUNE)


def _shard_bytes(manifest_path: str) -> list[bytes]:
    files = read_manifest(manifest_path).paths("train", Path(manifest_path).parent)
    return [tf.io.parse_single_example(record, FEATURE_SPEC)[IMAGE_KEY].numpy() for record in tf.data.TFRecordDataset(files)]


def _decode_only(encoded: list[bytes]) -> tf.data.Dataset:
    images = tf.data.Dataset.from_tensor_slices(encoded).repeat()
    decoded = images.map(lambda data: (tf.io.decode_jpeg(data, channels=3), 0), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return decoded.batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE)
