"""Training across processes under JAX (components/training/multihost.py), as Kubeflow Trainer's
`jax-distributed` runtime runs it: here two processes on localhost, one CPU device each, joined
through a coordinator on a free loopback port, each running tests/model/multihost_check.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from components.training import multihost
from tests.conftest import free_port

CHECK = Path(__file__).with_name("multihost_check.py")
REPO = Path(__file__).parents[2]


def test_without_the_coordinator_variables_training_stays_in_one_process():
    assert multihost.from_environment({}) == multihost.Processes(count=1, index=0)


def test_some_but_not_all_coordinator_variables_are_refused_by_name():
    with pytest.raises(ValueError, match="JAX_PROCESS_ID"):
        multihost.from_environment({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2"})


def test_training_across_processes_under_tensorflow_is_refused(monkeypatch):
    """This process runs TensorFlow; its multi-worker fit is broken upstream."""
    for name, value in {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match="keras-team/keras#20585"):
        multihost.joined()


def _start(processes: int, manifest: str, folder: Path, data_json: str, crash: bool) -> list[subprocess.Popen]:
    """`processes` check scripts training one run in `folder`: two joined by a coordinator, one
    device each, or one alone spreading the same global batch over two emulated devices."""
    base = {name: value for name, value in os.environ.items() if name not in multihost.ENVIRONMENT}
    base |= {"KERAS_BACKEND": "jax", "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    base["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={2 // processes}"
    coordinator = f"127.0.0.1:{free_port()}"
    started = []
    for index in range(processes):
        environment = dict(base)
        if processes > 1:
            environment |= {"JAX_COORDINATOR_ADDRESS": coordinator, "JAX_NUM_PROCESSES": str(processes), "JAX_PROCESS_ID": str(index)}
        command = [sys.executable, str(CHECK), manifest, str(folder / "work"), data_json, str(folder / f"process{index}.json")]
        with open(folder / f"process{index}.log", "a") as log:
            started.append(
                subprocess.Popen([*command, *(["crash"] if crash else [])], stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=environment)
            )
    return started


def _finish(started: list[subprocess.Popen]) -> list[int]:
    try:
        return [process.wait(timeout=600) for process in started]
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def _log_tail(folder: Path) -> str:
    return "\n".join(path.read_text()[-2000:] for path in sorted(folder.glob("process*.log")))


@pytest.mark.slow
def test_two_processes_train_as_one_and_resume_after_both_are_killed(tiny_data_config, manifest_path, tmp_path):
    """Both kinds of run are SIGKILLed once epoch 1 is checkpointed and then rerun, at the same
    time (two processes and one, so three on this machine's cores): the resumed runs must agree."""
    data_json = tiny_data_config.model_dump_json()
    joined, alone = tmp_path / "two-processes", tmp_path / "one-process"
    for folder in (joined, alone):
        folder.mkdir()
    killed = _finish([*_start(2, manifest_path, joined, data_json, crash=True), *_start(1, manifest_path, alone, data_json, crash=True)])
    assert killed == [-9, -9, -9], _log_tail(joined) + _log_tail(alone)
    done = _finish([*_start(2, manifest_path, joined, data_json, crash=False), *_start(1, manifest_path, alone, data_json, crash=False)])
    assert done == [0, 0, 0], _log_tail(joined) + _log_tail(alone)

    chief, other = (json.loads((joined / f"process{index}.json").read_text()) for index in (0, 1))
    single = json.loads((alone / "process0.json").read_text())
    assert (chief["process_index"], other["process_index"]) == (0, 1)
    assert chief["result"] == other["result"], "every process returns the chief's result"
    assert (chief["result"]["resumed_at_epoch"], chief["result"]["epochs_completed"]) == (1, 2)
    weights = [np.load(joined / f"process{index}.npz") for index in (0, 1)]
    assert all(np.array_equal(weights[0][name], weights[1][name]) for name in weights[0].files), "the replicas drifted apart"
    # The same global batches in the same order: float reductions over gloo are all that differ
    # (measured: training losses equal to the bit, validation losses within 2e-7, weights within 3e-5).
    np.testing.assert_allclose(chief["loss"], single["loss"], rtol=1e-5)
    np.testing.assert_allclose(chief["val_loss"], single["val_loss"], rtol=1e-5)
    reference = np.load(alone / "process0.npz")
    for name in reference.files:
        np.testing.assert_allclose(weights[0][name], reference[name], atol=1e-4)

    client = MlflowClient(f"sqlite:///{joined / 'mlflow.db'}")
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    assert [run.info.run_id for run in runs] == [chief["result"]["run_id"]], "only the chief starts a run"
    assert runs[0].data.params["processes"] == "2" and runs[0].data.params["replicas"] == "2"
    assert len(client.get_metric_history(runs[0].info.run_id, "train/loss")) == 2
