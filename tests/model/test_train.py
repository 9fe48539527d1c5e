"""Training end to end on tiny shards, against a real MLflow sqlite store."""

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

from components import evaluate, predict, registry, shard, train, validate
from components.config import DataConfig, build_config

pytestmark = pytest.mark.slow


class SimulatedCrash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated crash after epoch 2")


@pytest.fixture
def manifest_path(tiny_data_config: DataConfig, tmp_path: Path) -> str:
    work_dir = str(tmp_path / "work")
    validated = validate.run(validate.ValidateConfig(data=tiny_data_config, work_dir=work_dir))
    sharded = shard.run(
        shard.ShardConfig(
            data=tiny_data_config, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=work_dir
        )
    )
    return sharded.manifest_path


def _config(tiny_data_config: DataConfig, manifest_path: str, tmp_path: Path, epochs: int = 3) -> train.TrainConfig:
    overrides = {
        "data": tiny_data_config.model_dump(),
        "work_dir": str(tmp_path / "work"),
        "variant": {"fit": {"epochs": epochs, "batch_size": 16, "precise_bn_batches": 2}},
    }
    return train.TrainConfig(pipeline=build_config("improved", "demo", overrides), manifest_path=manifest_path)


def test_crash_resumes_at_the_next_epoch_in_the_same_run(tiny_data_config, manifest_path, tmp_path, tracking_store):
    cfg = _config(tiny_data_config, manifest_path, tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(cfg, extra_callbacks=[SimulatedCrash()])
    run_dir = train.run_directory(cfg, json.loads(Path(manifest_path).read_text()))
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 2
    crashed_run_id = (run_dir / "mlflow_run_id").read_text()
    assert MlflowClient().get_run(crashed_run_id).info.status == "FAILED"

    result = train.run(cfg)

    assert (result.resumed_at_epoch, result.epochs_completed, result.reused) == (2, 3, False)
    assert result.run_id == crashed_run_id
    history = MlflowClient().get_metric_history(result.run_id, "train/loss")
    assert sorted(point.step for point in history) == [1, 2, 3], "each epoch logged once, none repeated, counted from 1"
    assert MlflowClient().get_run(result.run_id).info.status == "FINISHED"


def test_run_records_params_curves_pictures_and_model(tiny_data_config, manifest_path, tmp_path, tracking_store):
    result = train.run(_config(tiny_data_config, manifest_path, tmp_path, epochs=2))
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.tags["variant"] == "improved"
    assert run.data.params["model.trainable_backbone_layers"] == "15"
    assert run.data.params["parameters_trainable"] == "6701825"
    for metric in ("train/loss", "val/loss", "train/accuracy", "train/auc", "val/auc", "train/precision", "train/learning_rate"):
        assert len(client.get_metric_history(result.run_id, metric)) == 2, metric
    artifacts = {item.path for folder in ("plots", "data", "config") for item in client.list_artifacts(result.run_id, folder)}
    assert {"plots/learning_curves.png", "data/manifest.json", "config/pipeline.yaml"} <= artifacts
    model = mlflow.keras.load_model(result.model_uri)
    assert model.input_shape == (None, 32, 32, 3)
    assert mlflow.models.get_model_info(result.model_uri).signature is not None


def test_finished_run_is_reused_not_repeated(tiny_data_config, manifest_path, tmp_path, tracking_store):
    cfg = _config(tiny_data_config, manifest_path, tmp_path, epochs=1)
    first = train.run(cfg)
    again = train.run(cfg)
    assert again.reused and again.run_id == first.run_id
    assert len(MlflowClient().get_metric_history(first.run_id, "train/loss")) == 1


def test_champion_predicts_probability_of_ai_generated_per_image(tiny_data_config, manifest_path, tmp_path, tracking_store):
    trained = train.run(_config(tiny_data_config, manifest_path, tmp_path, epochs=1))
    evaluated = evaluate.run(
        evaluate.EvaluateConfig(
            manifest_path=manifest_path, model_path=trained.model_path, run_id=trained.run_id, output_dir=str(tmp_path / "eval")
        )
    )
    registry.run(
        registry.RegistryConfig(
            registered_model="predict-test",
            model_uri=trained.model_uri,
            run_id=trained.run_id,
            variant="improved",
            dataset_fingerprint="tiny",
            threshold=evaluated.threshold,
            metrics=evaluated.test,
        )
    )
    folder = Path(tiny_data_config.root) / "test" / "FAKE"
    result = predict.run(predict.PredictConfig(images=str(folder), model_uri="models:/predict-test@champion"))
    assert len(result.predictions) == len(list(folder.iterdir())) and not result.skipped
    assert all(0.0 <= row.p_ai_generated <= 1.0 and row.label in ("FAKE", "REAL") for row in result.predictions)
    assert result.threshold == pytest.approx(evaluated.threshold)
    corrupt = Path(tiny_data_config.root) / "train" / "REAL" / "defect_truncated.jpg"
    assert (
        "truncated"
        in predict.run(predict.PredictConfig(images=str(corrupt), model_uri="models:/predict-test@champion")).skipped[str(corrupt)].lower()
    )

    shown = subprocess.run(
        [sys.executable, "-m", "components.cli", "predict", str(folder), "--model-uri", "models:/predict-test@champion"],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_store},
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[1] == "p_ai_generated\tlabel\tpath" and len(lines) == 2 + len(result.predictions)
    listed = subprocess.run(
        [sys.executable, "-m", "components.cli", "models", "--name", "predict-test", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_store},
    )
    assert "champion" in listed.stdout and trained.run_id in listed.stdout
