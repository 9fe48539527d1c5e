"""Training end to end on tiny shards, against a real MLflow sqlite store.

Most tests read the session's one trained tiny run (`trained_run`, tests/conftest.py); only the
crash-and-resume test trains a model of its own, since crashing is what it tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import pytest
from mlflow import MlflowClient

from components import predict, train
from components.config import DataConfig, build_config
from components.contracts import Manifest
from tests.conftest import TrainedRun

pytestmark = pytest.mark.slow


class SimulatedCrash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise RuntimeError("simulated crash after epoch 1")


def test_crash_resumes_at_the_next_epoch_in_the_same_run(tiny_data_config: DataConfig, manifest_path, tmp_path, tracking_store):
    overrides = {
        "data": tiny_data_config.model_dump(),
        "work_dir": str(tmp_path / "work"),
        "variant": {"fit": {"epochs": 2, "batch_size": 16, "precise_bn_batches": 2}},
    }
    cfg = train.TrainConfig(pipeline=build_config("improved", "demo", overrides), manifest_path=manifest_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(cfg, extra_callbacks=[SimulatedCrash()])
    run_dir = train.run_directory(cfg, Manifest.read(manifest_path))
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 1
    crashed_run_id = (run_dir / "mlflow_run_id").read_text()
    assert MlflowClient().get_run(crashed_run_id).info.status == "FAILED"

    result = train.run(cfg)

    assert (result.resumed_at_epoch, result.epochs_completed, result.reused) == (1, 2, False)
    assert result.run_id == crashed_run_id
    history = MlflowClient().get_metric_history(result.run_id, "train/loss")
    assert sorted(point.step for point in history) == [1, 2], "each epoch logged once, none repeated, counted from 1"
    assert MlflowClient().get_run(result.run_id).info.status == "FINISHED"


def test_run_records_params_curves_pictures_and_model(trained_run: TrainedRun, trained_store):
    run_id, model_uri = trained_run.trained["run_id"], trained_run.trained["model_uri"]
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.tags["variant"] == "improved"
    assert run.data.params["model.trainable_backbone_layers"] == "15"
    assert run.data.params["parameters_trainable"] == "6701825"
    for metric in ("train/loss", "val/loss", "train/accuracy", "train/auc", "val/auc", "train/precision", "train/learning_rate"):
        assert len(client.get_metric_history(run_id, metric)) == 2, metric
    artifacts = {item.path for folder in ("plots", "data", "config") for item in client.list_artifacts(run_id, folder)}
    assert {"plots/learning_curves.png", "data/manifest.json", "config/pipeline.yaml"} <= artifacts
    model = mlflow.keras.load_model(model_uri)
    assert model.input_shape == (None, 32, 32, 3)
    assert mlflow.models.get_model_info(model_uri).signature is not None


def test_finished_run_is_reused_not_repeated(trained_run: TrainedRun, trained_store):
    again = train.run(train.TrainConfig.model_validate(trained_run.config))
    assert again.reused and again.run_id == trained_run.trained["run_id"]
    assert len(MlflowClient().get_metric_history(again.run_id, "train/loss")) == 2


def _champion(trained_run: TrainedRun) -> str:
    return f"models:/{trained_run.registered_model}@champion"


def test_champion_predicts_probability_of_ai_generated_per_image(trained_run: TrainedRun, trained_store):
    folder = Path(trained_run.data.root) / "test" / "FAKE"
    result = predict.run(predict.PredictConfig(images=str(folder), model_uri=_champion(trained_run)))
    assert len(result.predictions) == len(list(folder.iterdir())) and not result.skipped
    assert all(0.0 <= row.p_ai_generated <= 1.0 and row.label in ("FAKE", "REAL") for row in result.predictions)
    assert result.threshold == pytest.approx(trained_run.evaluated["threshold"])


def test_predict_names_an_unreadable_image_instead_of_failing(trained_run: TrainedRun, trained_store):
    corrupt = Path(trained_run.data.root) / "train" / "REAL" / "defect_truncated.jpg"
    result = predict.run(predict.PredictConfig(images=str(corrupt), model_uri=_champion(trained_run)))
    assert not result.predictions and "truncated" in result.skipped[str(corrupt)].lower()


def _cli(*args: str, store: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "components.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": store})


def test_predict_command_prints_one_line_per_image(trained_run: TrainedRun, trained_store):
    folder = Path(trained_run.data.root) / "test" / "FAKE"
    shown = _cli("predict", str(folder), "--model-uri", _champion(trained_run), store=trained_store)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[1] == "p_ai_generated\tlabel\tpath" and len(lines) == 2 + len(list(folder.iterdir()))


def test_models_list_shows_the_champion_and_its_run(trained_run: TrainedRun, trained_store):
    listed = _cli("models", "--name", trained_run.registered_model, "list", store=trained_store)
    assert listed.returncode == 0, listed.stderr
    assert "champion" in listed.stdout and trained_run.trained["run_id"] in listed.stdout
