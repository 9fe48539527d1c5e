"""Loading a registered model runs no code its author chose, and loads only what was registered.

Everything runs against a real MLflow sqlite store with real logged models; the planted version
is a real SavedModel whose resource initializer writes a file when TensorFlow restores it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from components import settings
from components.registry import loading, register
from components.serving import predict

NAME = "loading-under-test"


def _registered(layers: list | None = None) -> register.RegistryResult:
    model = keras.Sequential([keras.Input((4,)), *(layers or []), keras.layers.Dense(1, activation="sigmoid")])
    with mlflow.start_run() as active:
        info = mlflow.keras.log_model(model, name="model", pip_requirements=["keras"])
    cfg = register.RegistryConfig(
        registered_model=NAME,
        model_uri=info.model_uri,
        run_id=active.info.run_id,
        variant="improved",
        dataset_fingerprint="data-a",
        threshold=0.5,
        metrics={"val/auc_final": 0.7, "test/auc": 0.7},
    )
    return register.run(cfg)


def _artifact_file(version: str) -> Path:
    """Where the registry's copy of the .keras file lives: what a writer of the artifact store can replace."""
    source = MlflowClient().get_model_version(NAME, version).source
    model_id = source.removeprefix("models:/")
    return Path(urlparse(mlflow.get_logged_model(model_id).artifact_location).path) / loading.KERAS_FILE


def _planted_saved_model(folder: Path, marker: Path, run_id: str) -> None:
    """An MLmodel that asks for tf.saved_model.load, over a SavedModel that writes `marker` when restored."""
    import tensorflow as tf

    class Planted(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

        def _initialize(self):
            tf.io.write_file(str(marker), "code from the model ran here")
            return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=tf.constant(0.0))

    module = tf.Module()
    module.planted = Planted()
    tf.saved_model.save(module, str(folder / "data" / "model"))
    marker.unlink(missing_ok=True)  # saving ran the initializer once, here, on purpose
    keras_flavor = {"keras_version": keras.__version__, "save_exported_model": True, "data": "data"}
    mlmodel = {"run_id": run_id, "artifact_path": "model", "flavors": {"keras": keras_flavor}}
    (folder / "MLmodel").write_text(json.dumps(mlmodel))


def test_registration_records_the_keras_files_sha256_and_a_load_checks_it(tracking_store):
    version = _registered().version
    tags = MlflowClient().get_model_version(NAME, version).tags
    assert tags[loading.SHA256_TAG] == loading.file_sha256(_artifact_file(version))
    model = loading.load_registered(f"models:/{NAME}@champion")
    assert model.predict(np.zeros((2, 4), "float32"), verbose=0).shape == (2, 1)


def test_a_tampered_keras_file_is_refused_naming_the_version(tracking_store, tmp_path: Path):
    version = _registered().version
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    shutil.copyfile(tmp_path / "other.keras", _artifact_file(version))
    with pytest.raises(loading.ModelRefused, match=f"{NAME} version {version}: data/model.keras has SHA-256"):
        loading.load_registered(f"models:/{NAME}/{version}")


def test_a_version_without_a_recorded_digest_is_refused(tracking_store):
    version = _registered().version
    MlflowClient().delete_model_version_tag(NAME, version, loading.SHA256_TAG)
    with pytest.raises(loading.ModelRefused, match=f"{NAME} version {version} has no model_sha256 tag"):
        loading.load_registered(f"models:/{NAME}@champion")


def test_a_lambda_layer_is_refused_by_safe_mode(tracking_store):
    _registered([keras.layers.Lambda(lambda x: x * 2)])
    with pytest.raises(ValueError, match="safe_mode"):
        loading.load_registered(f"models:/{NAME}@champion")


def test_a_planted_exported_model_is_refused_before_tensorflow_runs_it(tracking_store, tmp_path: Path, tiny_dataset: Path):
    marker = tmp_path / "written-by-the-model"
    folder = tmp_path / "planted"
    manifest = {"positive_class": "REAL", "generated_class": "FAKE", "class_names": ["FAKE", "REAL"]}
    with mlflow.start_run() as active:
        _planted_saved_model(folder, marker, active.info.run_id)
        mlflow.log_artifacts(str(folder), artifact_path="model")
        mlflow.log_dict(manifest, "data/manifest.json")
    version = mlflow.register_model(f"runs:/{active.info.run_id}/model", NAME, tags={loading.SHA256_TAG: "0" * 64})
    MlflowClient().set_registered_model_alias(NAME, "champion", version.version)
    images = next(tiny_dataset.rglob("*.png"))
    with pytest.raises(Exception) as refused:  # noqa: PT011 - what matters first is that nothing ran
        predict.run(predict.PredictConfig(images=str(images), model_uri=f"models:/{NAME}@champion"))
    assert not marker.exists()
    assert isinstance(refused.value, loading.ModelRefused) and "save_exported_model: true" in str(refused.value)


def test_only_registry_uris_and_keras_files_are_loaded(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(loading.ModelRefused, match="Received: 'runs:/abc/model'"):
        loading.load_registered("runs:/abc/model")
    assert not list(tmp_path.iterdir()), "a refused URI opened (and so created) MLflow's default store"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(tmp_path / "model.h5")
    with pytest.raises(loading.ModelRefused, match="Only native .keras files"):
        loading.load_file(tmp_path / "model.h5")


def test_pickle_flavours_are_off_even_when_the_user_turned_them_on(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(loading.PICKLE_SETTING, "true")
    settings.apply(tmp_path / "absent.env", tmp_path / "absent.local.env")
    assert os.environ[loading.PICKLE_SETTING] == "false"
