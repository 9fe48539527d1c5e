"""A model trained under one Keras backend is evaluated, registered and served under the other.

The JAX side runs in its own process (tests/model/backend_check.py): the backend is fixed when
keras is first imported, and this process runs TensorFlow, the default. Both share one real
MLflow sqlite store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from components import evaluate, predict, registry, shard, train, validate
from components.config import DataConfig, build_config

pytestmark = pytest.mark.slow
CHECK = Path(__file__).with_name("backend_check.py")


def _jax(*arguments: str, store: str) -> dict:
    environment = {**os.environ, "KERAS_BACKEND": "jax", "MLFLOW_TRACKING_URI": store}
    done = subprocess.run(
        [sys.executable, str(CHECK), *arguments], capture_output=True, text=True, cwd=Path(__file__).parents[2], env=environment
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_dataset):
    """Shards of the tiny data (with the default live augmentation policy) and one MLflow store."""
    root = tmp_path_factory.mktemp("backends")
    data = DataConfig(root=str(tiny_dataset), image_size=32, encoding="png", images_per_shard=8)
    validated = validate.run(validate.ValidateConfig(data=data, work_dir=str(root / "work")))
    config = shard.ShardConfig(
        data=data, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=str(root / "work")
    )
    return {"root": root, "data": data, "manifest": shard.run(config).manifest_path, "store": f"sqlite:///{root / 'mlflow.db'}"}


@pytest.fixture(scope="module")
def jax_trained(world):
    images = str(Path(world["data"].root) / "test" / "FAKE")
    return _jax(
        "train", world["manifest"], str(world["root"] / "jax"), world["data"].model_dump_json(), "jax-model", images, store=world["store"]
    )


@pytest.fixture
def store(world, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["store"])
    mlflow.set_tracking_uri(world["store"])
    yield world["store"]
    mlflow.set_tracking_uri(None)


def test_jax_run_records_its_backend_and_needs_jax(jax_trained, store):
    assert jax_trained["backend"] == "jax"
    run = mlflow.MlflowClient().get_run(jax_trained["run_id"])
    assert run.data.tags["backend"] == run.data.params["backend"] == "jax"
    assert any(line.startswith("jax==") for line in jax_trained["requirements"])
    assert not any(line.startswith("tensorflow") for line in jax_trained["requirements"])
    # Live augmentation ran inside the model under JAX, and is saved with it (inactive when serving).
    assert "augment" in jax_trained["layers"]


def test_jax_trained_model_evaluates_and_predicts_alike_under_tensorflow(world, jax_trained, store, tmp_path):
    model_path = str(Path(mlflow.artifacts.download_artifacts(jax_trained["model_uri"], dst_path=str(tmp_path))) / "data" / "model.keras")
    evaluated = evaluate.run(evaluate.EvaluateConfig(manifest_path=world["manifest"], model_path=model_path, output_dir=str(tmp_path)))
    assert evaluated.test["test/auc"] == pytest.approx(jax_trained["test"]["test/auc"], abs=1e-6)
    served = predict.run(predict.PredictConfig(images=str(Path(world["data"].root) / "test" / "FAKE"), model_uri=jax_trained["model_uri"]))
    scores = {row.path: row.p_ai_generated for row in served.predictions}
    assert scores.keys() == jax_trained["predictions"].keys() and scores
    np.testing.assert_allclose(
        [scores[key] for key in sorted(scores)], [jax_trained["predictions"][key] for key in sorted(scores)], atol=1e-4
    )


def test_tensorflow_trained_model_is_served_under_jax(world, store, tmp_path):
    overrides = {
        "data": world["data"].model_dump(),
        "work_dir": str(tmp_path / "work"),
        "variant": {"fit": {"epochs": 1, "batch_size": 16}},
    }
    trained = train.run(train.TrainConfig(pipeline=build_config("baseline", "demo", overrides), manifest_path=world["manifest"]))
    assert keras.backend.backend() == "tensorflow"
    requirements = (
        Path(mlflow.artifacts.download_artifacts(trained.model_uri, dst_path=str(tmp_path / "model"))) / "requirements.txt"
    ).read_text()
    assert "tensorflow==" in requirements
    evaluated = evaluate.run(
        evaluate.EvaluateConfig(manifest_path=world["manifest"], model_path=trained.model_path, output_dir=str(tmp_path))
    )
    registry.run(
        registry.RegistryConfig(
            registered_model="tf-model",
            model_uri=trained.model_uri,
            run_id=trained.run_id,
            variant="baseline",
            dataset_fingerprint="tiny",
            threshold=evaluated.threshold,
            metrics=evaluated.test,
        )
    )
    images = str(Path(world["data"].root) / "test" / "FAKE")
    local = {
        row.path: row.p_ai_generated
        for row in predict.run(predict.PredictConfig(images=images, model_uri="models:/tf-model@champion")).predictions
    }

    served = _jax("serve", world["manifest"], "models:/tf-model@champion", images, str(tmp_path / "served"), store=world["store"])

    assert served["backend"] == "jax"
    assert served["test"]["test/auc"] == pytest.approx(evaluated.test["test/auc"], abs=1e-6)
    np.testing.assert_allclose([served["predictions"][key] for key in sorted(local)], [local[key] for key in sorted(local)], atol=1e-4)
