"""The registry's serving model, as MLflow's models-from-code file: what `mlflow models serve -m
models:/<name>@champion` and `mlflow.pyfunc.load_model` run. Registration logs it
(components/registry/serving_model.py) with the version's `.keras` file and shard manifest as
artifacts and its threshold in the model config; nothing is pickled.

Input: a column `image` of encoded image bytes (MLflow's scoring server base64-decodes binary
columns of `dataframe_split` and `dataframe_records`; the `inputs` form passes the text through,
so base64 is decoded here). Output, one row per image: p_ai_generated, verdict, threshold,
model_version and error (components/serving/scoring.py, the same path as `detector predict`).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import mlflow
import pandas as pd

from components.contracts import Manifest
from components.registry import loading
from components.serving import scoring

KERAS_ARTIFACT, MANIFEST_ARTIFACT = "keras_model", "manifest"


class DetectorModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        config = context.model_config
        keras_file = Path(context.artifacts[KERAS_ARTIFACT])
        # The copy inside this model must be the file registration hashed, wherever it is served.
        actual, expected = loading.file_sha256(keras_file), config["model_sha256"]
        if actual != expected:
            raise loading.ModelRefused(f"{keras_file.name} has SHA-256 {actual}, but {expected} was logged; refusing to load it")
        manifest = Manifest.read(context.artifacts[MANIFEST_ARTIFACT])
        self.detector = scoring.Detector(loading.load_file(keras_file), manifest, float(config["threshold"]), _version(config))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        images = [_image_bytes(value) for value in model_input["image"]]
        # object columns: a refused image's missing score travels as null, not as NaN
        return pd.DataFrame([answer.model_dump() for answer in self.detector.score(images)], dtype=object)


def _image_bytes(value) -> bytes | None:
    """Image bytes, from raw bytes or base64. The `inputs` form reaches here as the base64 text
    (as str, or encoded to bytes by the schema's binary type): an encoded image always holds bytes
    outside the base64 alphabet, so whatever decodes as strict base64 was base64."""
    if isinstance(value, str):
        value = value.encode("ascii", errors="replace")
    if not isinstance(value, bytes | bytearray | memoryview):
        return None
    try:
        return base64.b64decode(bytes(value), validate=True)
    except (binascii.Error, ValueError):
        return bytes(value)


def _version(config: dict) -> str:
    """The registry version made from this model's run. Registration logs the model before the
    version exists, so it is looked up when loaded; without a store (a built image with no
    tracking URI, where MLflow's default would create one in the working folder) or a reachable
    one, the run names it."""
    if not mlflow.tracking.is_tracking_uri_set():
        return f"run {config['run_id']}"
    try:
        found = mlflow.MlflowClient().search_model_versions(f"name='{config['registered_model']}' and run_id='{config['run_id']}'")
    except Exception:  # noqa: BLE001 - any store failure leaves the fallback, never a failed load
        found = []
    if not found:
        return f"run {config['run_id']}"
    return str(max(int(version.version) for version in found))


mlflow.models.set_model(DetectorModel())
