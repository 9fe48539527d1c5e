"""Load models only in the one shape that runs no code chosen by the model's author.

A registered version is loaded from its `.keras` file with Keras' `safe_mode=True` (no Lambda
bytecode, no classes from outside Keras and this project), never through MLflow's flavour
loader: an `MLmodel` that sets `save_exported_model: true` would make MLflow call
`tf.saved_model.load`, which runs the SavedModel's resource initializers. Registration records
the `.keras` file's SHA-256 as a version tag, and every load checks it first, so a file swapped
in the artifact store after registration is refused before Keras opens it. Pickle-based MLflow
flavours are switched off in every process that imports this module's loaders.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import yaml

SHA256_TAG = "model_sha256"
KERAS_FILE = "data/model.keras"  # where mlflow.keras.log_model puts the native Keras file
SERVING_KERAS_FILE = "artifacts/model.keras"  # where the serving pyfunc model keeps its copy
PICKLE_SETTING = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
# models:/<name>/<version> or models:/<name>@<alias>: the only URIs that carry a recorded digest.
REGISTRY_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))")


class ModelRefused(RuntimeError):
    """A model was not loaded because it is not in the one safe shape, or not what was registered."""


def forbid_pickle() -> None:
    """Set, not default: a user's `true` must not re-enable pickle flavours in a loading process."""
    os.environ[PICKLE_SETTING] = "false"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def logged_model_sha256(model_uri: str) -> str:
    """SHA-256 of the `.keras` file behind a logged or registered model; what registration records."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="model-digest-") as scratch:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch))
        return file_sha256(keras_file(local, model_uri))


def load_file(path: str | Path):
    """A `.keras` file from this machine (training's own output), in safe mode."""
    import keras

    import components.training.model  # noqa: F401  registers the custom layers (ImageNetPreprocess, NearestResidual)

    forbid_pickle()
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelRefused(f"Only native .keras files are loaded. Received: model_path={str(path)!r}")
    return keras.saving.load_model(path, safe_mode=True)


def load_registered(model_uri: str):
    """The Keras model of a registry version, after its flavour and its SHA-256 tag are checked."""
    import mlflow

    forbid_pickle()
    version = resolve_version(model_uri)
    label = f"{version.name} version {version.version}"
    expected = version.tags.get(SHA256_TAG)
    if not expected:
        raise ModelRefused(f"{label} has no {SHA256_TAG} tag, so its file cannot be verified; refusing to load it. Received: {model_uri}")
    # Pinned to the version number, so an alias moving meanwhile cannot swap what is checked.
    pinned = f"models:/{version.name}/{version.version}"
    with tempfile.TemporaryDirectory(prefix="model-load-") as scratch:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=scratch))
        found = keras_file(local, label)
        actual = file_sha256(found)
        if actual != expected:
            relative = found.relative_to(local)
            raise ModelRefused(f"{label}: {relative} has SHA-256 {actual}, but {expected} was registered; refusing to load it")
        return load_file(found)


def resolve_version(model_uri: str):
    """The URI's form is checked before the store is opened: opening MLflow's default store
    creates ./mlflow.db, which a refused URI must not leave behind."""
    from mlflow import MlflowClient

    match = REGISTRY_URI.fullmatch(model_uri)
    if not match:
        expected = "models:/<name>/<version> or models:/<name>@<alias>"
        raise ModelRefused(f"Models load only from the registry ({expected}), where their digest is recorded. Received: {model_uri!r}")
    client = MlflowClient()
    if match["alias"]:
        return client.get_model_version_by_alias(match["name"], match["alias"])
    return client.get_model_version(match["name"], match["version"])


def keras_file(local: Path, label: str) -> Path:
    """The `.keras` file of a downloaded model folder: the keras flavour's, or the one in the
    registry's serving model (components/registry/serving_model.py), whose code is never run
    here. Any other flavour or layout is refused."""
    mlmodel = local / "MLmodel"
    flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}) if mlmodel.is_file() else {}
    keras_flavor, pyfunc = flavors.get("keras"), flavors.get("python_function")
    if isinstance(keras_flavor, dict):
        if keras_flavor.get("save_exported_model"):
            raise ModelRefused(f"{label}: an exported SavedModel (save_exported_model: true) runs its own code on load; refused")
        relative = KERAS_FILE
    elif isinstance(pyfunc, dict) and (pyfunc.get("artifacts") or {}).get("keras_model", {}).get("path") == SERVING_KERAS_FILE:
        relative = SERVING_KERAS_FILE
    else:
        expected = "only the keras flavour or the serving model's .keras file is loaded"
        raise ModelRefused(f"{label}: {expected}. Received flavours: {sorted(flavors)}")
    found = local / relative
    if found.is_symlink() or not found.is_file():
        raise ModelRefused(f"{label}: no regular file {relative} in the model")
    return found
