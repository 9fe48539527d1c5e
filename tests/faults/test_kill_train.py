"""kill -9 of a training run at a seeded random point, then the same command again: the run
ends as a clean run ends, in the same MLflow run, with every epoch logged once.

A clean run is not trained beside it: what a clean run leaves is fixed by the config (its
epochs, one FINISHED MLflow run whose every metric has one point per epoch, result.json, a
model that loads), and the rerun is checked against exactly that. Weights are not compared:
TensorFlow's threaded CPU kernels make even two clean runs differ in the last bits, so only
what is deterministic is.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from components import record
from components.config import build_config
from components.contracts import Manifest
from components.training import train
from components.training.callbacks import mlflow_metric_name
from tests.faults.sharding import SEED, tree_digest

pytestmark = pytest.mark.slow  # one tiny ResNet50 training, killed and resumed

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 3


def _epochs_saved(run_dir: Path) -> int:
    """Epochs whose checkpoint and counters are on disk (state.json is replaced atomically)."""
    try:
        return json.loads((run_dir / "state.json").read_text())["epoch"]
    except FileNotFoundError:
        return 0


def _wait_for_epoch(run_dir: Path, epoch: int, victim: subprocess.Popen, deadline: float) -> float:
    while _epochs_saved(run_dir) < epoch:
        assert victim.poll() is None, f"training exited with {victim.returncode} before epoch {epoch} was saved"
        assert time.monotonic() < deadline, f"epoch {epoch} not saved in time"
        time.sleep(0.05)
    return time.monotonic()


def _kill_at_seeded_point(run_dir: Path, victim: subprocess.Popen) -> str:
    """A seeded share of the second epoch's length after the second epoch was saved: inside the
    last epoch's training, validation, checkpoint or metric logging. The first epoch is no
    yardstick: it includes building and tracing the model, and is several times longer."""
    share = random.Random(SEED).uniform(0.0, 0.9)  # below 1: the last epoch plus the final logging take longer
    deadline = time.monotonic() + 600
    first = _wait_for_epoch(run_dir, 1, victim, deadline)
    length = _wait_for_epoch(run_dir, 2, victim, deadline) - first
    time.sleep(share * length)  # the kill point itself: seeded, not a wait for a result
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, f"training finished before its kill point (FAULT_SEED={SEED})"
    return f"FAULT_SEED={SEED}: killed {share:.2f} of an epoch ({length:.1f} s) after epoch 2 was saved"


# NPR with a decay every epoch, so the resumed epochs must continue its rate schedule.
VARIANTS = {"improved": {}, "npr": {"decay_every_epochs": 1}}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rerun_after_kill_9_resumes_one_run_and_ends_as_a_clean_run(
    variant, tiny_data_config, tiny_dataset, manifest_path, tmp_path, tracking_store
):
    sources, shards = tree_digest(tiny_dataset), tree_digest(Path(manifest_path).parent)
    overrides = {
        "data": tiny_data_config.model_dump(),
        "work_dir": str(tmp_path / "work"),
        "variant": {"fit": {"epochs": EPOCHS, "batch_size": 16, "precise_bn_batches": 2, **VARIANTS[variant]}},
    }
    cfg = train.TrainConfig(pipeline=build_config(variant, "demo", overrides), manifest_path=manifest_path)
    config_file = tmp_path / "train.json"
    config_file.write_text(cfg.model_dump_json())
    run_dir = train.run_directory(cfg, Manifest.read(manifest_path))
    command = ["--config", str(config_file)]
    victim = subprocess.Popen(
        [sys.executable, "-m", "components.training.train", *command],
        cwd=REPO,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_store},
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # the whole group goes, as when a node is lost
    )
    try:
        where = _kill_at_seeded_point(run_dir, victim)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
    saved_at_kill = _epochs_saved(run_dir)
    killed_run_id = (run_dir / "mlflow_run_id").read_text().strip()
    assert not (run_dir / "result.json").exists()

    train.main(command)  # the same command, in this process

    result = train.TrainResult.model_validate_json((run_dir / "result.json").read_text())
    assert (result.epochs_completed, result.resumed_at_epoch, result.reused) == (EPOCHS, saved_at_kill, False), where
    client = MlflowClient()
    experiment = client.get_experiment_by_name(cfg.pipeline.experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    assert [run.info.run_id for run in runs] == [killed_run_id] == [result.run_id], f"resumed, not duplicated ({where})"
    assert runs[0].info.status == "FINISHED"
    history = json.loads((run_dir / "state.json").read_text())["history"]
    assert [row["epoch"] for row in history] == list(range(EPOCHS)), where
    assert "train/loss" in runs[0].data.metrics
    for key in runs[0].data.metrics:
        points = client.get_metric_history(result.run_id, key)
        # Steps count epochs from 1 (callbacks.EpochState).
        assert sorted(point.step for point in points) == list(range(1, EPOCHS + 1)), f"{key}: every epoch logged exactly once ({where})"
        recorded = {row["epoch"] + 1: value for row in history for name, value in row.items() if mlflow_metric_name(name) == key}
        # MLflow gets them rounded (record.rounded_metrics); state.json keeps them whole.
        assert all(record.rounded_metric(recorded.get(point.step, point.value)) == point.value for point in points), key

    if cfg.pipeline.variant.fit.decay_every_epochs:
        rates = sorted(client.get_metric_history(result.run_id, "train/learning_rate"), key=lambda point: point.step)
        base = cfg.pipeline.variant.fit.learning_rate
        assert [point.value for point in rates] == [record.rounded_metric(base * 0.8**epoch) for epoch in range(EPOCHS)], where
    assert mlflow.models.get_model_info(result.model_uri).signature is not None
    model = keras.models.load_model(result.model_path)
    assert model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0).shape == (2, 1)
    assert tree_digest(tiny_dataset) == sources and tree_digest(Path(manifest_path).parent) == shards, "sources untouched"
