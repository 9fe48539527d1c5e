"""Where training runs and in which number format: the GPU switches of FitConfig, resolved.

Every switch defaults to "auto", which means on when a GPU is visible and off on a CPU-only
host, so the CPU path (and its tests) is exactly what it was. Multi-worker training is not
offered: Keras 3's multi-worker model.fit is broken upstream (keras-team/keras#20585).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import keras
import tensorflow as tf

from components.config import FitConfig


@dataclass(frozen=True)
class Placement:
    """The resolved switches for one training run."""

    strategy: tf.distribute.Strategy
    replicas: int
    global_batch_size: int
    learning_rate: float
    mixed_precision: bool
    jit_compile: bool | str


def resolve(fit: FitConfig) -> Placement:
    gpus = tf.config.list_logical_devices("GPU")
    strategy = distribution_strategy(fit.distribution, len(gpus))
    replicas = strategy.num_replicas_in_sync
    per_replica = fit.gpu_batch_size if gpus and fit.gpu_batch_size else fit.batch_size
    global_batch_size = per_replica * replicas
    return Placement(
        strategy=strategy,
        replicas=replicas,
        global_batch_size=global_batch_size,
        learning_rate=scaled_learning_rate(fit.learning_rate, fit.batch_size, global_batch_size, fit.learning_rate_scaling),
        mixed_precision=fit.mixed_precision == "on" or (fit.mixed_precision == "auto" and bool(gpus)),
        jit_compile={"auto": "auto", "on": True, "off": False}[fit.xla],
    )


# One strategy per process and setting: a second MirroredStrategy reuses the first one's
# collective instance keys, and its all-reduce then fails on mismatched shapes (seen with two
# variants trained in one process, as `compare` does).
@functools.cache
def distribution_strategy(distribution: str, gpu_count: int) -> tf.distribute.Strategy:
    """auto: MirroredStrategy over several GPUs, OneDeviceStrategy on one (its distributed
    dataset prefetches batches onto the GPU ahead of the step), the default strategy on CPU.
    mirrored: MirroredStrategy over all GPUs, or all logical CPUs when there is none (tests)."""
    if distribution == "none" or (distribution == "auto" and gpu_count == 0):
        return tf.distribute.get_strategy()
    if distribution == "mirrored":
        devices = [device.name for device in tf.config.list_logical_devices("GPU" if gpu_count else "CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if gpu_count == 1:
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    return tf.distribute.MirroredStrategy()


def scaled_learning_rate(learning_rate: float, reference_batch: int, global_batch: int, rule: str) -> float:
    """The rate for `global_batch`, given one tuned for `reference_batch` (FitConfig explains the rules)."""
    ratio = global_batch / reference_batch
    return learning_rate * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[rule]


@contextmanager
def building(placement: Placement) -> Iterator[None]:
    """Build, load and compile inside this: variables land on the replicas, and layers made here
    compute in float16 with float32 variables when mixed precision is on. The global dtype
    policy is restored afterwards, so nothing leaks into the next model built in-process."""
    previous = keras.config.dtype_policy()
    if placement.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        with placement.strategy.scope():
            yield
    finally:
        keras.config.set_dtype_policy(previous)
