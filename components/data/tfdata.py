"""The tf.data shard reader, and the tf.data augmentation warp: the default with TensorFlow installed.

Training shuffles files and records; every other split is read in order. With several replicas
the training remainder is dropped and evaluation's last batch is padded with zero-weight copies
(components/data/reader.py explains why).

With several processes, training shards by file: a TFRecord file streams from its start, so a
process reads only its own files, repeated as needed, for exactly the global step count. That
needs at least one training shard file per process, and where the processes' files hold unequal
numbers of records, those of the process with fewer are drawn more often: so `runtime.reader`
auto picks the TensorFlow-free reader, which shares out records, whenever several processes
train; this path is there for those who ask for tf.data. Evaluation reads every file in order and
keeps its own slice of each global batch, the records the TensorFlow-free reader gives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from components.contracts import Manifest
from components.data import degrade
from components.data.affine import draw_ranges, inverse_affine
from components.data.schema import IMAGE_KEY, LABEL_KEY, SOURCE_KEY, augment_seed, batch_count, is_identity

FEATURE_SPEC = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    SOURCE_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
}
# What training and evaluation read: the source path is for people, and parsing it costs.
READ_SPEC = {key: FEATURE_SPEC[key] for key in (IMAGE_KEY, LABEL_KEY)}

# Bounded, so memory stays flat however large the dataset grows.
SHUFFLE_BUFFER = 2048


@dataclass(frozen=True)
class ProcessShare:
    """Which of the training processes reads (components/data/reader.py)."""

    count: int = 1
    index: int = 0


def affine_transforms(policy: dict[str, Any], batch: tf.Tensor, height: tf.Tensor, width: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Per image, components/data/affine.py's inverse map as the 8 numbers ImageProjectiveTransformV3 takes."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    max_angle, max_x, max_y = draw_ranges(policy, width, height)
    angle = tf.random.stateless_uniform([batch], seeds[0], -1.0, 1.0) * max_angle
    shift_x = tf.random.stateless_uniform([batch], seeds[1], -1.0, 1.0) * max_x
    shift_y = tf.random.stateless_uniform([batch], seeds[2], -1.0, 1.0) * max_y
    flip = tf.ones([batch])
    if policy["horizontal_flip"]:
        flip = tf.where(tf.random.stateless_uniform([batch], seeds[3]) < 0.5, -1.0, 1.0)
    zeros = tf.zeros([batch])
    return tf.stack([*inverse_affine(angle, shift_x, shift_y, flip, width, height, tf.math), zeros, zeros], axis=1)


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
    manifest: Manifest,
    folder: Path,
    split: str,
    batch_size: int,
    training: bool,
    seed: int,
    dtype: str,
    augment: bool,
    replicas: int,
    share: ProcessShare = ProcessShare(),
) -> tf.data.Dataset:
    """reader.make_dataset's tf.data reader (its docstring says what comes out)."""
    batches = _decoded_batches(manifest, folder, split, batch_size, training, seed, replicas, share)
    policy, seed = manifest.augmentation.policy, augment_seed(seed, share.index)
    if augment and training and manifest.augmentation.applied == "live" and not is_identity(policy):
        # One random seed pair per batch; it differs every epoch, and stays reproducible per seed.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        batches = tf.data.Dataset.zip(batches, seeds).map(
            lambda batch, pair: (fused_augment(batch[0], policy, pair), *batch[1:]), num_parallel_calls=tf.data.AUTOTUNE
        )
    if training and degrade.is_active(policy):
        batches = _with_degradation(batches, policy, seed)
    if dtype != "uint8":
        batches = batches.map(lambda images, *rest: (tf.cast(images, dtype), *rest), num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def _with_degradation(batches: tf.data.Dataset, policy: dict[str, Any], seed: int) -> tf.data.Dataset:
    """components/data/degrade.py's JPEG and blur augmentation, on the reader's CPU threads."""
    seeds = tf.data.Dataset.random(seed=seed + 7, rerandomize_each_iteration=True).batch(2)

    def apply(images: tf.Tensor, labels: tf.Tensor, pair: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        degraded = tf.numpy_function(lambda batch, key: degrade.degrade_batch(batch, policy, key), [images, pair], tf.uint8)
        return tf.ensure_shape(degraded, images.shape), labels

    return tf.data.Dataset.zip(batches, seeds).map(lambda batch, pair: apply(*batch, pair), num_parallel_calls=tf.data.AUTOTUNE)


def _decoded_batches(
    manifest: Manifest, folder: Path, split: str, batch_size: int, training: bool, seed: int, replicas: int, share: ProcessShare
) -> tf.data.Dataset:
    paths = manifest.paths(split, folder)
    size = manifest.image_size
    jpeg = manifest.encoding.codec == "jpeg"
    # Only training shards of `fit: crop` hold images larger than the model (components/data/fit.py).
    random_crop = training and manifest.fit == "crop"
    crop_seed = augment_seed(seed, share.index)
    if training:
        paths = _own_files(paths, share)
        files = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        if share.count > 1:
            files = files.repeat()  # cut to the global step count below
        records = files.interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(paths), 8), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False
        )
        records = records.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    else:
        # Evaluation order is file by file, record by record: what the TensorFlow-free reader yields too.
        records = tf.data.TFRecordDataset(paths)

    def parse(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        example = tf.io.parse_single_example(serialized, READ_SPEC)
        if jpeg:  # the accurate DCT, as Pillow decodes: the same pixels as the TF-free reader and predict
            image = tf.io.decode_jpeg(example[IMAGE_KEY], channels=3, dct_method="INTEGER_ACCURATE")
        else:
            image = tf.io.decode_image(example[IMAGE_KEY], channels=3, expand_animations=False)
        image = tf.image.random_crop(image, [size, size, 3], seed=crop_seed) if random_crop else tf.ensure_shape(image, [size, size, 3])
        return image, tf.reshape(tf.cast(example[LABEL_KEY], tf.float32), [1])

    count = manifest.entry(split).count
    steps = batch_count(count, batch_size, training, replicas)
    if share.count > 1 and not training:
        weighted = _evaluation_share(records, count, batch_size, replicas, share)
        batches = weighted.map(lambda serialized, weight: (*parse(serialized), weight), num_parallel_calls=tf.data.AUTOTUNE)
        return batches.batch(batch_size // share.count).apply(tf.data.experimental.assert_cardinality(steps))
    drop = training and replicas > 1
    # Training takes records in whatever order they decode: shuffled anyway, and no head-of-line wait.
    local_batch = batch_size // share.count
    batches = records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training).batch(local_batch, drop_remainder=drop)
    if share.count > 1:
        batches = batches.take(steps)
    if replicas > 1 and not training:
        batches = batches.map(lambda images, labels: _pad_to_multiple(images, labels, replicas))
    # A known length gives Keras its step count up front (progress, no "ran out of data").
    return batches.apply(tf.data.experimental.assert_cardinality(steps))


def _own_files(paths: list[str], share: ProcessShare) -> list[str]:
    own = paths[share.index :: share.count]
    if not own:
        raise ValueError(
            f"tf.data gives each training process its own shard files, and there are fewer than processes. Set "
            f"runtime.reader=python (it shards by record), or shard with a smaller data.images_per_shard. "
            f"Received: {len(paths)} training shard files, {share.count} processes"
        )
    return own


def _evaluation_share(records: tf.data.Dataset, count: int, batch_size: int, replicas: int, share: ProcessShare) -> tf.data.Dataset:
    """(serialized record, weight) of this process's slice of every global batch, in order; the
    last batch is padded with zero-weight copies of its first record, as the one-process path pads it."""
    full = count // batch_size * batch_size  # records in whole global batches
    last = count - full
    extra = (-last) % replicas
    weighted = records.map(lambda serialized: (serialized, 1.0))
    if extra:
        weighted = weighted.concatenate(records.skip(full).take(1).repeat(extra).map(lambda serialized: (serialized, 0.0)))
    whole_share = tf.constant(batch_size // share.count, tf.int64)
    last_share = tf.constant(max((last + extra) // share.count, 1), tf.int64)

    def own(position: tf.Tensor, _: Any) -> tf.Tensor:
        in_whole = position < full
        offset = tf.where(in_whole, position % batch_size, position - full)
        return offset // tf.where(in_whole, whole_share, last_share) == share.index

    return weighted.enumerate().filter(own).map(lambda _, item: item)


def _pad_to_multiple(images: tf.Tensor, labels: tf.Tensor, replicas: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    size = tf.shape(images)[0]
    extra = (-size) % replicas
    weights = tf.concat([tf.ones([size]), tf.zeros([extra])], axis=0)
    repeat = tf.zeros([extra], tf.int32)  # copies of the first example, weighted 0
    return tf.concat([images, tf.gather(images, repeat)], 0), tf.concat([labels, tf.gather(labels, repeat)], 0), weights
