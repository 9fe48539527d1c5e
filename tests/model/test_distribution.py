"""Multi-device training on two CPU devices under each backend, and the learning-rate rule.

TensorFlow spreads over two logical CPUs with MirroredStrategy, JAX over two emulated host
devices with keras.distribution.DataParallel; each runs in its own process (the backend and the
device count are fixed when it starts): TensorFlow's here, JAX's in the suite's one JAX process
(test_backends.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from components.config import FitConfig, RuntimeConfig
from components.training import accelerator

CHECK = Path(__file__).with_name("distributed_check.py")


@pytest.mark.parametrize(("rule", "expected"), [("sqrt", 2e-4), ("linear", 4e-4), ("none", 1e-4)])
def test_learning_rate_scales_with_the_global_batch(rule, expected):
    assert accelerator.scaled_learning_rate(1e-4, 32, 128, rule) == pytest.approx(expected)


def test_cpu_only_host_keeps_the_single_device_path():
    placement = accelerator.resolve(FitConfig())
    assert (placement.replicas, placement.global_batch_size, placement.learning_rate) == (1, 32, 1e-4)
    assert placement.precision == "float32" and placement.jit_compile == "auto" and placement.distribution is None


def test_a_runtime_for_the_other_backend_is_refused_by_name():
    other = "jax" if accelerator.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(ValueError, match=f"runtime.backend='{other}'"):
        accelerator.resolve(FitConfig(), RuntimeConfig(backend=other))


def assert_data_parallel_matches_one_device_and_resumes(outcome: dict, backend: str) -> None:
    """What distributed_check.py reports, under either backend."""
    parallel, single = outcome["parallel"], outcome["single"]
    assert parallel["backend"] == single["backend"] == backend
    assert (parallel["replicas"], parallel["global_batch_size"]) == (2, 16)
    assert (single["replicas"], single["global_batch_size"]) == (1, 16)
    np.testing.assert_allclose(parallel["loss"], single["loss"], rtol=1e-3)
    for distributed, local in zip(parallel["head"], single["head"]):
        np.testing.assert_allclose(distributed, local, rtol=1e-3, atol=1e-5)
    assert outcome["resume"] == {"crashed": "simulated crash after epoch 1", "resumed_at_epoch": 1, "epochs_completed": 2}


@pytest.mark.slow
def test_data_parallel_on_two_devices_matches_one_device_and_resumes(tiny_data_config, manifest_path, tmp_path):
    """TensorFlow's; the JAX case runs in the suite's JAX process (test_backends.py)."""
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    command = [sys.executable, str(CHECK), manifest_path, str(tmp_path / "work"), tiny_data_config.model_dump_json()]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parents[2], env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_data_parallel_matches_one_device_and_resumes(json.loads(done.stdout.strip().splitlines()[-1]), "tensorflow")


def test_zero_weight_padding_counts_for_nothing_in_the_loss_and_metrics():
    """Evaluation on several devices pads its last batch with copies weighted 0 (components/data/reader.py)."""
    import keras

    from components.training.compiled import compile_at

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    compile_at(model, 1e-3)
    rng = np.random.default_rng(0)
    images, labels = rng.random((5, 3), dtype="float32"), np.array([[1.0], [0.0], [1.0], [0.0], [1.0]], dtype="float32")
    padded = model.evaluate(
        np.concatenate([images, images[:3]]),
        np.concatenate([labels, labels[:3]]),
        sample_weight=np.array([1.0] * 5 + [0.0] * 3),
        batch_size=8,
        return_dict=True,
        verbose=0,
    )
    assert padded == pytest.approx(model.evaluate(images, labels, batch_size=8, return_dict=True, verbose=0))
