"""Training input stall: the same model trained from shards and from in-memory tensors.

Each feed gets its own copy of the improved variant (64 px, batch 32) and a warm-up epoch
(tracing, thread pools); then measured epochs of the same step count alternate between the two
feeds, and each keeps its best. train_input_stall = shard-fed ÷ in-memory rate.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from components.config import IMPROVED
from components.data.reader import make_dataset
from components.data.schema import read_manifest
from components.training.train import compile_model

BATCH_SIZE = 32


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def measure(manifest_path: str, steps: int, rounds: int = 2) -> dict[str, float]:
    """Images/s of the best measured epoch for both feeds, and their ratio."""
    images, labels = _in_memory(manifest_path)
    memory = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(len(images), seed=0).repeat().batch(BATCH_SIZE)
    feeds = {
        "in_memory": memory.prefetch(tf.data.AUTOTUNE),
        "from_shards": make_dataset(manifest_path, "train", BATCH_SIZE, training=True, dtype=tf.uint8).repeat(),
    }
    size = read_manifest(manifest_path).image_size
    models = {name: _model(size) for name in feeds}
    for name, feed in feeds.items():
        models[name].fit(feed, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    rates = dict.fromkeys(feeds, 0.0)
    for _ in range(rounds):
        for name, feed in feeds.items():
            timer = EpochTimer()
            models[name].fit(feed, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=False)
            rates[name] = max(rates[name], steps * BATCH_SIZE / timer.seconds)
    return {**rates, "train_input_stall": rates["from_shards"] / rates["in_memory"]}


def _in_memory(manifest_path: str) -> tuple[np.ndarray, np.ndarray]:
    batches = list(make_dataset(manifest_path, "train", 256, dtype=tf.uint8))
    return np.concatenate([images.numpy() for images, _ in batches]), np.concatenate([labels.numpy() for _, labels in batches])


def _model(image_size: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    return compile_model(IMPROVED.model.with_changes(backbone_weights="none"), IMPROVED.fit, image_size)
