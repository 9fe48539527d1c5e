"""One training process of test_multihost.py, under JAX: train.run on the tiny shards, as each
process of a Kubeflow `jax-distributed` job runs it (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
and JAX_PROCESS_ID set by the test), or alone when they are unset.

Usage: python tests/model/multihost_check.py MANIFEST WORK_DIR DATA_JSON REPORT_JSON [crash]
  crash: once epoch 1 is checkpointed, every process SIGKILLs itself (a node lost mid-run);
  otherwise REPORT_JSON gets the run's result, its loss per epoch, and this process's weights.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import keras
import numpy as np

from components.config import build_config
from components.training import multihost, train
from components.training.callbacks import load_state

# NPR: the smallest network the variants build (1.4 M parameters, two ResNet stages): it traces
# and compiles under JAX in a fraction of ResNet50's time. Batch 4 per device, so the two
# processes' global batch is 8 and the 11 validation images end on a padded batch.
VARIANT = "npr"
FIT = {"epochs": 2, "batch_size": 4, "precise_bn_batches": 2}


class KillAfterFirstEpoch(keras.callbacks.Callback):
    """After the chief's EpochState saved epoch 1 (it runs before this callback), all die at once."""

    def on_epoch_end(self, epoch, logs=None):
        multihost.barrier(multihost.from_environment().count, "test: epoch 1 saved")
        os.kill(os.getpid(), signal.SIGKILL)


class FinalWeights(keras.callbacks.Callback):
    weights: list[np.ndarray] = []

    def on_train_end(self, logs=None):
        self.weights = [keras.ops.convert_to_numpy(weight) for weight in self.model.weights]


def main(manifest_path: str, work_dir: str, data: dict, report_path: str, crash: bool) -> None:
    overrides = {
        "data": data,
        "work_dir": work_dir,
        "variant": {"fit": FIT},
        # The TensorFlow-free reader, as on a JAX GPU host; data_parallel so that one process alone
        # spreads the same global batch over two emulated devices.
        "runtime": {"distribution": "data_parallel", "reader": "python"},
    }
    cfg = train.TrainConfig(pipeline=build_config(VARIANT, "demo", overrides), manifest_path=manifest_path)
    final = FinalWeights()
    result = train.run(cfg, extra_callbacks=[KillAfterFirstEpoch()] if crash else [final])
    history = load_state(train.run_directory(cfg, train.read_manifest(manifest_path)))["history"]
    np.savez(report_path.replace(".json", ".npz"), *final.weights)
    report = {
        "result": result.model_dump(mode="json"),
        "loss": [row["loss"] for row in history],
        "val_loss": [row["val_loss"] for row in history],
        "process_index": multihost.from_environment().index,
        "devices": keras.distribution.list_devices(),
    }
    with open(report_path, "w") as out:
        json.dump(report, out)


if __name__ == "__main__":
    manifest, work, data_json, report = sys.argv[1:5]
    main(manifest, work, json.loads(data_json), report, crash=sys.argv[5:] == ["crash"])
