"""Training end to end on tiny shards, against a real MLflow sqlite store.

The tests read the session's one trained tiny run (`trained_run`, tests/conftest.py). Crashing
and resuming, which need a training of their own, are tested with staged training
(test_quality_runs.py) and kill -9 (tests/faults/test_kill_train.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from components import record
from components.serving import predict
from components.training import train
from tests.conftest import TrainedRun

pytestmark = pytest.mark.slow


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
    image_keys = {item.path.split("+")[0] for item in client.list_artifacts(run_id, "images")}
    assert {"images/plots~learning_curves", "images/plots~roc"} <= image_keys, "training's and evaluation's pictures, by key"
    loss = client.get_metric_history(run_id, "train/loss")[0].value
    assert loss == record.rounded_metric(loss), "logged without float noise (state.json keeps it whole)"
    # The signature is read off the model's tensors; served through pyfunc, which enforces it,
    # float pixels in [0, 255] give one probability each.
    signature = mlflow.models.get_model_info(model_uri).signature
    assert (signature.inputs.inputs[0].shape, signature.outputs.inputs[0].shape) == ((-1, 32, 32, 3), (-1, 1))
    scores = mlflow.pyfunc.load_model(model_uri).predict(np.full((2, 32, 32, 3), 127.0, dtype=np.float32))
    assert np.shape(scores) == (2, 1) and np.all((0 <= np.asarray(scores)) & (np.asarray(scores) <= 1))


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
    # The registry tag carries the tuned threshold to six decimals (components/registry/tags.py).
    assert result.threshold == pytest.approx(trained_run.evaluated["threshold"], abs=1e-6)
    assert result.threshold_p_ai == pytest.approx(1 - result.threshold) and result.generated_class == "FAKE"
    assert all((row.label == "FAKE") == (row.p_ai_generated > result.threshold_p_ai) for row in result.predictions)


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


def test_predict_into_a_closed_pipe_stops_quietly(trained_run: TrainedRun, trained_store):
    """`detector predict DIR | head`: the reader leaves before the first line, and no traceback follows."""
    folder = Path(trained_run.data.root) / "test" / "FAKE"
    command = [sys.executable, "-m", "components.cli", "predict", str(folder), "--model-uri", _champion(trained_run)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained_store}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 1
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr[-2000:]


def test_models_list_shows_the_champion_and_its_run(trained_run: TrainedRun, trained_store):
    listed = _cli("models", "--name", trained_run.registered_model, "list", store=trained_store)
    assert listed.returncode == 0, listed.stderr
    assert "champion" in listed.stdout and trained_run.trained["run_id"] in listed.stdout
