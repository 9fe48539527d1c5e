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

from components import evaluate, predict, shard, validate
from components.config import DataConfig
from tests.conftest import shared_across_workers, tracking_at

pytestmark = pytest.mark.slow
CHECK = Path(__file__).with_name("backend_check.py")


def _jax(*arguments: str, store: str) -> dict:
    environment = {**os.environ, "KERAS_BACKEND": "jax", "MLFLOW_TRACKING_URI": store}
    done = subprocess.run(
        [sys.executable, str(CHECK), *arguments], capture_output=True, text=True, cwd=Path(__file__).parents[2], env=environment
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _train_under_jax(root: Path, dataset: Path) -> dict:
    """Shards of the tiny data (with the default live augmentation policy), one MLflow store, and
    a model trained and registered there by a JAX process: what backend_check.py reports, plus
    where it all is."""
    data = DataConfig(root=str(dataset), image_size=32, encoding="png", images_per_shard=8)
    validated = validate.run(validate.ValidateConfig(data=data, work_dir=str(root / "work")))
    config = shard.ShardConfig(
        data=data, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=str(root / "work")
    )
    manifest, store, images = shard.run(config).manifest_path, f"sqlite:///{root / 'mlflow.db'}", str(dataset / "test" / "FAKE")
    trained = _jax("train", manifest, str(root / "jax"), data.model_dump_json(), "jax-model", images, store=store)
    return {**trained, "manifest": manifest, "store": store, "images": images}


@pytest.fixture(scope="session")
def jax_trained(tmp_path_factory, tiny_dataset):
    return shared_across_workers(tmp_path_factory, "jax-trained", lambda root: _train_under_jax(root, tiny_dataset))


@pytest.fixture
def store(jax_trained):
    with tracking_at(jax_trained["store"]) as uri:
        yield uri


def test_jax_run_records_its_backend_and_needs_jax(jax_trained, store):
    assert jax_trained["backend"] == "jax"
    run = mlflow.MlflowClient().get_run(jax_trained["run_id"])
    assert run.data.tags["backend"] == run.data.params["backend"] == "jax"
    assert any(line.startswith("jax==") for line in jax_trained["requirements"])
    assert not any(line.startswith("tensorflow") for line in jax_trained["requirements"])
    # Live augmentation ran inside the model under JAX, and is saved with it (inactive when serving).
    assert "augment" in jax_trained["layers"]


def test_jax_trained_model_evaluates_and_predicts_alike_under_tensorflow(jax_trained, store, tmp_path):
    model_path = str(Path(mlflow.artifacts.download_artifacts(jax_trained["model_uri"], dst_path=str(tmp_path))) / "data" / "model.keras")
    config = evaluate.EvaluateConfig(manifest_path=jax_trained["manifest"], model_path=model_path, output_dir=str(tmp_path))
    evaluated = evaluate.run(config)
    assert evaluated.test["test/auc"] == pytest.approx(jax_trained["test"]["test/auc"], abs=1e-6)
    served = predict.run(predict.PredictConfig(images=jax_trained["images"], model_uri=jax_trained["model_uri"]))
    scores = {row.path: row.p_ai_generated for row in served.predictions}
    assert scores.keys() == jax_trained["predictions"].keys() and scores
    np.testing.assert_allclose(
        [scores[key] for key in sorted(scores)], [jax_trained["predictions"][key] for key in sorted(scores)], atol=1e-4
    )


def test_tensorflow_trained_model_is_served_under_jax(trained_run, trained_store, tmp_path):
    """The session's TensorFlow-trained champion, evaluated and served in a JAX process."""
    assert keras.backend.backend() == "tensorflow"
    model_uri = f"models:/{trained_run.registered_model}@champion"
    requirements = (Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "model"))) / "requirements.txt").read_text()
    assert "tensorflow==" in requirements
    images = str(Path(trained_run.data.root) / "test" / "FAKE")
    local = {row.path: row.p_ai_generated for row in predict.run(predict.PredictConfig(images=images, model_uri=model_uri)).predictions}

    served = _jax("serve", trained_run.manifest_path, model_uri, images, str(tmp_path / "served"), store=trained_store)

    assert served["backend"] == "jax"
    assert served["test"]["test/auc"] == pytest.approx(trained_run.evaluated["test"]["test/auc"], abs=1e-6)
    np.testing.assert_allclose([served["predictions"][key] for key in sorted(local)], [local[key] for key in sorted(local)], atol=1e-4)
