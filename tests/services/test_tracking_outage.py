"""A tracking server that goes away: a clear error, soon, and no training lost.

A real `mlflow server` on a free loopback port; killing its process group is the outage.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import mlflow
import pytest
from mlflow import MlflowClient

from components import settings
from components.config import build_config
from components.contracts import Manifest
from components.training import train
from tests.conftest import free_port, wait_for_http

pytestmark = [pytest.mark.services, pytest.mark.slow]
# What mlflow.env sets; the bound below follows from it (3 tries, 1 s and 2 s back-off), counted
# from the outage, so it holds on a loaded host (it covers epoch 2's training too).
RETRY_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
OUTAGE_BOUND_SECONDS = 90


class TrackingServer:
    def __init__(self, store: Path) -> None:
        self.store, self.port = store, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", "1", "--backend-store-uri", f"sqlite:///{self.store / 'mlflow.db'}"]
        command += ["--artifacts-destination", str(self.store / "artifacts"), "--serve-artifacts"]
        log = open(self.store / "server.log", "a")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_http(f"{self.uri}/health", self.process, timeout=120)

    def kill(self) -> None:
        """The whole group, gunicorn/uvicorn workers included, as a crashed host would go."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


class StopServerAfterFirstEpoch(keras.callbacks.Callback):
    def __init__(self, server: TrackingServer) -> None:
        super().__init__()
        self.server = server
        self.stopped_at = 0.0

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:  # epoch 1 is logged by now; epoch 2 will meet a dead server
            self.server.kill()
            self.stopped_at = time.monotonic()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = tmp_path / "server"
    store.mkdir()
    server = TrackingServer(store)
    server.start()
    for key, value in {**RETRY_SETTINGS, "MLFLOW_TRACKING_URI": server.uri}.items():
        monkeypatch.setenv(key, value)
    mlflow.set_tracking_uri(server.uri)
    yield server
    if server.process.poll() is None:
        server.kill()
    mlflow.set_tracking_uri(None)


def test_outage_mid_training_fails_fast_keeps_checkpoint_and_resumes(server, tiny_data_config, manifest_path, tmp_path):
    overrides = {
        "data": tiny_data_config.model_dump(),
        "work_dir": str(tmp_path / "work"),
        "variant": {"fit": {"epochs": 3, "batch_size": 16}},
    }
    cfg = train.TrainConfig(pipeline=build_config("improved", "demo", overrides), manifest_path=manifest_path)
    run_dir = train.run_directory(cfg, Manifest.read(manifest_path))

    outage = StopServerAfterFirstEpoch(server)
    with pytest.raises(settings.TrackingUnavailable, match="stopped answering at epoch 2") as failure:
        train.run(cfg, extra_callbacks=[outage])
    assert time.monotonic() - outage.stopped_at < OUTAGE_BOUND_SECONDS, "the outage was not reported within the bound"
    assert str(run_dir) in str(failure.value)
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["epoch"], state["logged"]) == (2, 1)  # epoch 2 trained and saved, not yet logged
    assert keras.models.load_model(run_dir / "last.keras").count_params() > 0

    server.start()  # same store, same port: the server is back
    result = train.run(cfg)

    assert (result.resumed_at_epoch, result.epochs_completed) == (2, 3)
    steps = [metric.step for metric in MlflowClient().get_metric_history(result.run_id, "val/loss")]
    assert steps == [1, 2, 3]  # the epoch the server missed was logged on resume
