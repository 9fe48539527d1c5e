"""Under JAX: data parallelism on two devices, and a model trained under one Keras backend
evaluated, registered and served under the other.

The JAX side is one process for the whole suite (tests/model/backend_check.py): the backend is
fixed when keras is first imported, and this process runs TensorFlow, the default. It starts on
its own work while this process trains the session's TensorFlow model, which it then serves.
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

from components.config import DataConfig
from components.data import shard, validate
from components.evaluation import evaluate
from components.registry import loading
from components.serving import predict
from tests.conftest import TrainedRun, shared_across_workers, tracking_at
from tests.model.test_distribution import assert_data_parallel_matches_one_device_and_resumes

pytestmark = pytest.mark.slow
CHECK = Path(__file__).with_name("backend_check.py")
REPO = Path(__file__).parents[2]


def _jax_session(root: Path, dataset: Path, tensorflow_run) -> dict:
    """Shards of the tiny data (with the default live augmentation policy), one MLflow store, and
    the JAX process's two reports (backend_check.py), plus where it all is. `tensorflow_run`
    gives the session's TensorFlow-trained run, built while the JAX process works."""
    work_dir = root / "work"
    data = DataConfig(root=str(dataset), image_size=32, encoding="png", images_per_shard=8)
    validated = validate.run(validate.ValidateConfig(data=data, work_dir=str(work_dir)))
    config = shard.ShardConfig(
        data=data, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=str(work_dir)
    )
    manifest, store, images = shard.run(config).manifest_path, f"sqlite:///{root / 'mlflow.db'}", str(dataset / "test" / "FAKE")
    spec = {
        "manifest": manifest,
        "work_dir": str(root / "jax"),
        "data": data.model_dump(mode="json"),
        "registered_model": "jax-model",
        "images": images,
    }
    (root / "jax").mkdir()
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "MLFLOW_TRACKING_URI": store,
    }
    log_path = root / "jax.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(CHECK), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env=environment,
        )
        try:
            tensorflow: TrainedRun = tensorflow_run()
            serve = {
                "store": tensorflow.store,
                "manifest": tensorflow.manifest_path,
                "model_uri": f"models:/{tensorflow.registered_model}@champion",
                "images": str(Path(tensorflow.data.root) / "test" / "FAKE"),
            }
            process.communicate(json.dumps(serve) + "\n", timeout=1500)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, log_path.read_text()[-3000:]
    reports = {name: json.loads((root / "jax" / f"{name}.json").read_text()) for name in ("trained", "served")}
    return {**reports, "manifest": manifest, "store": store, "images": images}


@pytest.fixture(scope="session")
def jax_session(tmp_path_factory, tiny_dataset, request):
    tensorflow_run = lambda: request.getfixturevalue("trained_run")  # noqa: E731
    return shared_across_workers(tmp_path_factory, "jax-session", lambda root: _jax_session(root, tiny_dataset, tensorflow_run))


@pytest.fixture
def jax_trained(jax_session):
    return {**jax_session["trained"], **{key: jax_session[key] for key in ("manifest", "store", "images")}}


@pytest.fixture
def store(jax_trained):
    with tracking_at(jax_trained["store"]) as uri:
        yield uri


def test_jax_data_parallel_on_two_devices_matches_one_device_and_resumes(jax_session):
    assert_data_parallel_matches_one_device_and_resumes(jax_session["trained"]["distribution"], "jax")


def test_jax_run_records_its_backend_and_needs_jax(jax_trained, store):
    assert jax_trained["backend"] == "jax"
    run = mlflow.MlflowClient().get_run(jax_trained["run_id"])
    assert run.data.tags["backend"] == run.data.params["backend"] == "jax"
    assert any(line.startswith("jax==") for line in jax_trained["requirements"])
    assert not any(line.startswith("tensorflow") for line in jax_trained["requirements"])
    # Live augmentation ran inside the model under JAX, and is saved with it (inactive when serving).
    assert "augment" in jax_trained["layers"]


def test_jax_trained_model_evaluates_and_predicts_alike_under_tensorflow(jax_trained, store, tmp_path):
    """The distributed, crashed and resumed JAX run, registered there, read back here."""
    local = Path(mlflow.artifacts.download_artifacts(jax_trained["model_uri"], dst_path=str(tmp_path)))
    model_path = str(loading.keras_file(local, jax_trained["model_uri"]))  # the serving model's copy
    config = evaluate.EvaluateConfig(manifest_path=jax_trained["manifest"], model_path=model_path, output_dir=str(tmp_path))
    evaluated = evaluate.run(config)
    assert evaluated.test["test/auc"] == pytest.approx(jax_trained["test"]["test/auc"], abs=1e-6)
    served = predict.run(predict.PredictConfig(images=jax_trained["images"], model_uri=jax_trained["model_uri"]))
    scores = {row.path: row.p_ai_generated for row in served.predictions}
    assert scores.keys() == jax_trained["predictions"].keys() and scores
    np.testing.assert_allclose(
        [scores[key] for key in sorted(scores)], [jax_trained["predictions"][key] for key in sorted(scores)], atol=1e-4
    )


def test_tensorflow_trained_model_is_served_under_jax(jax_session, trained_run, trained_store, tmp_path):
    """The session's TensorFlow-trained champion, evaluated and served in the JAX process."""
    assert keras.backend.backend() == "tensorflow"
    model_uri = f"models:/{trained_run.registered_model}@champion"
    requirements = (Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "model"))) / "requirements.txt").read_text()
    assert "tensorflow==" in requirements
    images = str(Path(trained_run.data.root) / "test" / "FAKE")
    local = {row.path: row.p_ai_generated for row in predict.run(predict.PredictConfig(images=images, model_uri=model_uri)).predictions}

    served = jax_session["served"]

    assert served["backend"] == "jax"
    assert served["test"]["test/auc"] == pytest.approx(trained_run.evaluated["test"]["test/auc"], abs=1e-6)
    np.testing.assert_allclose([served["predictions"][key] for key in sorted(local)], [local[key] for key in sorted(local)], atol=1e-4)
