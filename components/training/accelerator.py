"""Where training runs and in which number format: RuntimeConfig, resolved for this process.

The one module that branches on the Keras backend (KERAS_BACKEND, fixed when keras is first
imported): TensorFlow places replicas with tf.distribute, JAX with keras.distribution.DataParallel.
Every switch defaults to "auto", which means on when a GPU is visible and off on a CPU-only
host, so the CPU path (and its tests) is exactly what it was. Under JAX, training also spans
several processes (hosts) when the launcher sets JAX's coordinator variables
(components/training/multihost.py); TensorFlow stays on one node, since Keras 3's multi-worker
model.fit is broken upstream (keras-team/keras#20585). TensorFlow is imported only under its own
backend, so a JAX-only GPU host never needs it.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from components.config import FitConfig, RuntimeConfig
from components.training import multihost


@dataclass(frozen=True)
class Placement:
    """The resolved switches for one training run."""

    backend: str
    distribution: Any  # a tf.distribute.Strategy, a keras.distribution.DataParallel, or None (one device)
    replicas: int
    global_batch_size: int
    learning_rate: float
    precision: str  # a Keras dtype policy name
    jit_compile: bool | str
    augment_in_model: bool
    reader: str  # "tf.data" or "python"
    processes: int = 1  # training processes; `replicas` and `global_batch_size` count all of theirs
    process_index: int = 0  # 0 is the chief: the one that checkpoints and logs

    @property
    def chief(self) -> bool:
        return self.process_index == 0

    @property
    def mixed_precision(self) -> bool:
        return self.precision != "float32"


def backend() -> str:
    return keras.backend.backend()


def input_gradient(function: Callable, inputs: np.ndarray) -> np.ndarray:
    """d sum(function(inputs)) / d inputs as NumPy, on the process's backend (Grad-CAM)."""
    if backend() == "jax":
        import jax

        return np.asarray(jax.grad(lambda x: keras.ops.sum(function(x)))(np.asarray(inputs, dtype="float32")))
    import tensorflow as tf

    x = tf.convert_to_tensor(inputs, dtype=tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(function(x))
    return tape.gradient(total, x).numpy()


def resolve(fit: FitConfig, runtime: RuntimeConfig | None = None) -> Placement:
    runtime = runtime or RuntimeConfig()
    processes = multihost.joined()  # first: nothing may touch a JAX device before the processes join
    if runtime.backend not in ("auto", backend()):
        raise ValueError(
            f"This process runs Keras on {backend()!r} (KERAS_BACKEND). Received: runtime.backend={runtime.backend!r}; "
            "set KERAS_BACKEND before starting instead."
        )
    gpus = gpu_capabilities()
    distribution, replicas = _distribution(runtime.distribution, len(gpus), processes.count)
    per_replica = runtime.batch_per_device if gpus and runtime.batch_per_device else fit.batch_size
    global_batch_size = per_replica * replicas
    has_tf = importlib.util.find_spec("tensorflow") is not None
    # With several processes, the TensorFlow-free reader: it shares out records, where tf.data shares
    # out files, and a process with fewer records would draw each of them more often (tfdata.py).
    reader = {"auto": "tf.data" if has_tf and processes.count == 1 else "python"}.get(runtime.reader, runtime.reader)
    cpu_tf_data = not gpus and reader == "tf.data" and backend() == "tensorflow"
    return Placement(
        backend=backend(),
        distribution=distribution,
        replicas=replicas,
        global_batch_size=global_batch_size,
        learning_rate=scaled_learning_rate(fit.learning_rate, fit.batch_size, global_batch_size, fit.learning_rate_scaling),
        precision=_precision(runtime.precision, gpus),
        jit_compile={"auto": "auto", "on": True, "off": False}[runtime.xla],
        # The tf.data warp wins only where the reader's cores are the model's cores (bench/RESULTS.md).
        augment_in_model={"auto": not cpu_tf_data, "model": True, "input": False}[runtime.augmentation] or reader == "python",
        reader=reader,
        processes=processes.count,
        process_index=processes.index,
    )


def gpu_capabilities() -> list[tuple[int, int]]:
    """(major, minor) compute capability of each GPU (of every process, when several train); empty on a CPU-only host."""
    if backend() == "jax":
        import jax

        gpus = [device for device in jax.devices() if device.platform == "gpu"]
        return [tuple(int(part) for part in str(getattr(device, "compute_capability", "0.0")).split(".")[:2]) for device in gpus]
    import tensorflow as tf

    details = [tf.config.experimental.get_device_details(device) for device in tf.config.list_physical_devices("GPU")]
    return [tuple(detail.get("compute_capability", (0, 0))) for detail in details]


def _precision(setting: str, gpus: list[tuple[int, int]]) -> str:
    if setting != "auto":
        return setting
    if not gpus:
        return "float32"
    # bfloat16 needs Ampere (8.0) or newer; its float32 range needs no loss scaling. On older cards
    # mixed_float16, where Keras' compile wraps the optimizer in a LossScaleOptimizer.
    return "mixed_bfloat16" if min(gpus) >= (8, 0) else "mixed_float16"


def _distribution(setting: str, gpu_count: int, processes: int = 1) -> tuple[Any, int]:
    if processes > 1:
        if setting == "none":
            raise ValueError(f"Training across {processes} processes needs data parallelism. Received: runtime.distribution='none'")
        # Every device of every process; each process reads its own share (components/data/reader.py), not Keras' auto-shard.
        devices = keras.distribution.list_devices("gpu" if gpu_count else "cpu")
        return keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False), len(devices)
    if setting == "none" or (setting == "auto" and gpu_count <= 1):
        return (_one_gpu_strategy() if gpu_count == 1 and backend() == "tensorflow" else None), 1
    if backend() == "jax":
        devices = keras.distribution.list_devices("gpu" if gpu_count else "cpu")
        return keras.distribution.DataParallel(devices=devices), len(devices)
    strategy = _mirrored(gpu_count)
    return strategy, strategy.num_replicas_in_sync


# One strategy per process: a second MirroredStrategy reuses the first one's collective instance
# keys, and its all-reduce then fails on mismatched shapes (seen with two variants trained in one
# process, as `compare` does).
@functools.cache
def _mirrored(gpu_count: int) -> Any:
    import tensorflow as tf

    devices = [device.name for device in tf.config.list_logical_devices("GPU" if gpu_count else "CPU")]
    return tf.distribute.MirroredStrategy(devices)


@functools.cache
def _one_gpu_strategy() -> Any:
    """Its distributed dataset prefetches batches onto the GPU ahead of the step."""
    import tensorflow as tf

    return tf.distribute.OneDeviceStrategy("/gpu:0")


def scaled_learning_rate(learning_rate: float, reference_batch: int, global_batch: int, rule: str) -> float:
    """The rate for `global_batch`, given one tuned for `reference_batch` (FitConfig explains the rules)."""
    ratio = global_batch / reference_batch
    return learning_rate * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[rule]


@contextmanager
def building(placement: Placement) -> Iterator[None]:
    """Build, load, compile and fit inside this: variables land on the replicas (TensorFlow) and
    batches are split over the devices (JAX), and layers made here compute in the placement's
    precision with float32 variables. The global dtype policy is restored afterwards, so nothing
    leaks into the next model built in-process."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(placement.precision)
    scope = placement.distribution.scope() if placement.distribution is not None else nullcontext()
    try:
        with scope:
            yield
    finally:
        keras.config.set_dtype_policy(previous)


def compiled_forward(model: keras.Model) -> Callable[[Any], Any]:
    """A training-mode forward pass that updates BatchNorm statistics and nothing else, traced once.

    TensorFlow traces it with tf.function; under JAX the stateless call is jitted and the new
    non-trainable values are assigned back. Several replicas stay on the eager path the tests cover."""
    if backend() == "jax":
        import jax

        @jax.jit
        def step(trainable, non_trainable, batch):
            _, updated = model.stateless_call(trainable, non_trainable, batch, training=True)
            return updated

        def forward(batch):
            trainable = [variable.value for variable in model.trainable_variables]
            non_trainable = [variable.value for variable in model.non_trainable_variables]
            # np.asarray: tf.data hands over TensorFlow tensors, which JAX does not take.
            batch = np.asarray(batch)
            distribution = keras.distribution.distribution()
            if distribution is not None and distribution.num_processes > 1:
                # This process's share of the global batch, as fit's steps assemble it: the statistics are the global batch's.
                batch = jax.make_array_from_process_local_data(distribution.get_data_layout(batch.shape).backend_layout, batch)
            for variable, value in zip(model.non_trainable_variables, step(trainable, non_trainable, batch)):
                variable.assign(value)

        return forward
    import tensorflow as tf

    if model.distribute_strategy.num_replicas_in_sync > 1:
        return lambda batch: model(batch, training=True)
    return tf.function(lambda batch: model(batch, training=True))


def requirements() -> list[str]:
    """The logged model's pip requirements: keras and the backend package it was trained on."""
    if backend() == "jax":
        import jax

        return [f"jax=={jax.__version__}", f"keras=={keras.__version__}"]
    import tensorflow as tf

    return [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
