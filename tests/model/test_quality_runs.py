"""The quality features through the real stages: staged training resumes inside its stage (and
is this suite's in-process crash-and-resume test: the crashed run is marked FAILED, the rerun
continues it), the preserve stem keeps resolution at the report's parameter count, and every
evaluated run logs its robustness table, calibration and error gallery."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import mlflow
import pytest
from mlflow import MlflowClient

from components import record
from components.config import IMPROVED, DataConfig, build_config
from components.contracts import Manifest
from components.evaluation import evaluate
from components.evaluation.robustness import CONDITION_NAMES
from components.training import train
from components.training.model import build_model, count_parameters

pytestmark = pytest.mark.slow


class CrashInSecondStage(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("simulated crash after epoch 3, the first of stage 2")


def test_preserve_stem_keeps_resolution_and_parameter_count():
    standard = build_model(IMPROVED.model.with_changes(backbone_weights="none"), image_size=32)
    preserve = build_model(IMPROVED.model.with_changes(backbone_weights="none", stem="preserve"), image_size=32)
    assert count_parameters(preserve) == count_parameters(standard) == (24_770_689, 6_701_825)
    assert standard.get_layer("resnet50").output.shape[1:3] == (1, 1)
    assert preserve.get_layer("resnet50").output.shape[1:3] == (4, 4)


def test_staged_run_logs_one_epoch_axis_and_resumes_inside_its_stage(tiny_data_config: DataConfig, manifest_path, tmp_path, tracking_store):
    overrides = {
        "data": tiny_data_config.model_dump(),
        "work_dir": str(tmp_path / "work"),
        "variant": {"fit": {"epochs": 6, "batch_size": 16, "precise_bn_batches": 2}},
    }
    cfg = train.TrainConfig(pipeline=build_config("staged", "demo", overrides), manifest_path=manifest_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(cfg, extra_callbacks=[CrashInSecondStage()])
    run_dir = train.run_directory(cfg, Manifest.read(manifest_path))
    crashed_run_id = (run_dir / "mlflow_run_id").read_text()
    assert MlflowClient().get_run(crashed_run_id).info.status == "FAILED"

    result = train.run(cfg)

    assert (result.resumed_at_epoch, result.epochs_completed, result.reused) == (3, 6, False)
    assert result.run_id == crashed_run_id and MlflowClient().get_run(result.run_id).info.status == "FINISHED"
    losses = MlflowClient().get_metric_history(result.run_id, "train/loss")
    assert sorted(point.step for point in losses) == [1, 2, 3, 4, 5, 6], "each epoch logged once, none repeated, counted from 1"
    stages = MlflowClient().get_metric_history(result.run_id, "train/stage")
    assert [point.value for point in sorted(stages, key=lambda point: point.step)] == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    rates = [point.value for point in sorted(MlflowClient().get_metric_history(result.run_id, "train/learning_rate"), key=lambda p: p.step)]
    # Epoch 4 ran after the resume, still inside stage 2 at its rate.
    assert rates[2] == rates[3] == pytest.approx(rates[0] * 0.1) and rates[4] == pytest.approx(rates[0] * 0.01)
    state = json.loads((Path(result.model_path).parent / "state.json").read_text())
    assert [row["stage"] for row in state["history"]] == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]


def test_evaluation_logs_robustness_calibration_and_gallery(tiny_data_config: DataConfig, manifest_path, tmp_path, tracking_store):
    model_path = tmp_path / "model.keras"
    train.compile_model(IMPROVED.model.with_changes(backbone_weights="none"), IMPROVED.fit, 32).save(model_path)
    run_id = MlflowClient().create_run("0").info.run_id
    evaluate.run(
        evaluate.EvaluateConfig(manifest_path=manifest_path, model_path=str(model_path), run_id=run_id, output_dir=str(tmp_path / "eval"))
    )
    metrics = MlflowClient().get_run(run_id).data.metrics
    for condition in CONDITION_NAMES:
        assert 0.0 <= metrics[f"robust/{condition}/auc"] <= 1.0 and 0.0 <= metrics[f"robust/{condition}/accuracy"] <= 1.0
    assert 0.0 <= metrics["calibration/ece"] <= 1.0
    assert metrics["robust/worst_auc"] == min(metrics[f"robust/{condition}/auc"] for condition in CONDITION_NAMES if condition != "clean")
    plots = {item.path for item in MlflowClient().list_artifacts(run_id, "plots")}
    assert {"plots/robustness.png", "plots/reliability.png", "plots/error_gallery.png"} <= plots
    images = {item.path.split("+")[0] for item in MlflowClient().list_artifacts(run_id, "images")}
    assert {"images/plots~robustness", "images/plots~reliability", "images/plots~roc"} <= images, "the chart view's image keys"
    # trust.json keeps the figure whole; MLflow shows it rounded.
    ece = mlflow.artifacts.load_dict(f"runs:/{run_id}/evaluation/trust.json")["calibration"]["ece"]
    assert record.rounded_metric(ece) == metrics["calibration/ece"]
