"""Run by test_distribution.py in a fresh TensorFlow process, and imported by the JAX session
(backend_check.py). The two devices that data parallelism spreads over must exist before the
backend initialises them (TensorFlow: two logical CPUs, made here; JAX:
XLA_FLAGS=--xla_force_host_platform_device_count=2, set by the test that starts the process).

Usage: python tests/model/distributed_check.py MANIFEST WORK_DIR DATA_JSON; prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys

if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402 - after the device split
import numpy as np  # noqa: E402

from components.config import BASELINE, RuntimeConfig, build_config  # noqa: E402
from components.training import accelerator, train  # noqa: E402


class Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise RuntimeError("simulated crash after epoch 1")


def fit_on_fixed_batches(distribution: str, per_replica_batch: int) -> dict:
    """Two epochs on the same 64 images in the same order; no dropout, so only the device split differs."""
    fit = BASELINE.fit.with_changes(batch_size=per_replica_batch, learning_rate=1e-3, learning_rate_scaling="none")
    placement = accelerator.resolve(fit, RuntimeConfig(distribution=distribution))
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 32, 32, 3)).astype("uint8")
    labels = (rng.random((64, 1)) < 0.5).astype("float32")
    with accelerator.building(placement):
        model = train.compile_model(BASELINE.model.with_changes(backbone_weights="none", dropout=0.0), fit, 32, placement)
        history = model.fit(images, labels, batch_size=placement.global_batch_size, epochs=2, verbose=0, shuffle=False)
    return {
        "backend": placement.backend,
        "replicas": placement.replicas,
        "global_batch_size": placement.global_batch_size,
        "loss": history.history["loss"],
        "head": [keras.ops.convert_to_numpy(weight).tolist() for weight in model.get_layer("probability").weights],
    }


def crash_and_resume(manifest_path: str, work_dir: str, data: dict) -> tuple[dict, train.TrainResult]:
    """Global batch 10 (5 per device): the 11-image validation split ends on a batch of one, the
    case that once gave one replica an empty batch; it is padded with a zero-weight copy now.
    Returns what the test checks, and the resumed run (the JAX session registers and serves it)."""
    overrides = {
        "data": data,
        "work_dir": work_dir,
        "variant": {"fit": {"epochs": 2, "batch_size": 5, "precise_bn_batches": 2}},
        # The JAX run reads through the TensorFlow-free reader, so both readers train distributed.
        "runtime": {"distribution": "data_parallel", "reader": "python" if keras.backend.backend() == "jax" else "tf.data"},
    }
    cfg = train.TrainConfig(pipeline=build_config("improved", "demo", overrides), manifest_path=manifest_path)
    try:
        train.run(cfg, extra_callbacks=[Crash()])
    except RuntimeError as error:
        crashed = str(error)
    result = train.run(cfg)
    return {"crashed": crashed, "resumed_at_epoch": result.resumed_at_epoch, "epochs_completed": result.epochs_completed}, result


def check(manifest_path: str, work_dir: str, data: dict) -> tuple[dict, train.TrainResult]:
    """The same 64 images on two devices and on one, then a distributed run crashed and resumed."""
    resume, resumed = crash_and_resume(manifest_path, work_dir, data)
    outcome = {"parallel": fit_on_fixed_batches("data_parallel", 8), "single": fit_on_fixed_batches("none", 16), "resume": resume}
    return outcome, resumed


if __name__ == "__main__":
    manifest, work, data_json = sys.argv[1:4]
    print(json.dumps(check(manifest, work, json.loads(data_json))[0]))
