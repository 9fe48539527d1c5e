"""What registration puts in the registry: an MLflow pyfunc serving model, logged with
models-from-code (components/serving/mlflow_model.py; nothing is pickled) beside the run's
Keras model, so that `mlflow models serve -m models:/<name>@champion` takes image bytes and
answers P(AI-generated) and a verdict at the version's tuned threshold.

It carries the `.keras` file and the shard manifest as artifacts, the project's `components`
package as code, and requirements that name what that code imports. The registry refers to the
serving code by file, not by import: it is what MLflow runs, while this project's own loaders
(components/registry/loading.py) only ever read its `.keras` artifact.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from importlib.metadata import version as installed
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from PIL import Image

import components

PACKAGE = Path(components.__file__).resolve().parent
CODE = PACKAGE / "serving" / "mlflow_model.py"
ARTIFACT_PATH = "serving"  # in the training run, beside its "model"
# What the serving code imports beyond the Keras model's own requirements (keras, its backend, mlflow).
EXTRA_REQUIREMENTS = ("pillow", "pandas", "numpy", "pydantic", "pyyaml")
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", "image")]),
    outputs=Schema(
        [
            ColSpec("double", "p_ai_generated", required=False),
            ColSpec("string", "verdict", required=False),
            ColSpec("double", "threshold"),
            ColSpec("string", "model_version"),
            ColSpec("string", "error", required=False),
        ]
    ),
)


def log(run_id: str, keras_model_dir: Path, manifest: dict, config: dict) -> str:
    """Log the serving model into `run_id` and return its URI, for registration. `config` is
    the model config: registered_model, run_id, threshold, model_sha256."""
    with tempfile.TemporaryDirectory(prefix="serving-model-") as scratch:
        scratch = Path(scratch)
        (scratch / "manifest.json").write_text(_json(manifest))
        code = scratch / "code" / "components"
        shutil.copytree(PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        mlflow.pyfunc.save_model(
            scratch / ARTIFACT_PATH,
            python_model=str(CODE),
            artifacts={"keras_model": str(keras_model_dir / "data" / "model.keras"), "manifest": str(scratch / "manifest.json")},
            model_config=config,
            code_paths=[str(code)],
            signature=SIGNATURE,
            input_example=pd.DataFrame({"image": [example_jpeg()]}),
            pip_requirements=_requirements(keras_model_dir),
        )
        MlflowClient().log_artifacts(run_id, str(scratch / ARTIFACT_PATH), ARTIFACT_PATH)
    return f"runs:/{run_id}/{ARTIFACT_PATH}"


def _requirements(keras_model_dir: Path) -> list[str]:
    logged = keras_model_dir / "requirements.txt"
    lines = logged.read_text().splitlines() if logged.is_file() else [f"mlflow=={mlflow.__version__}"]
    named = {line.split("=")[0].split("<")[0].split(">")[0].strip().lower() for line in lines}
    return [*(line for line in lines if line.strip()), *(f"{name}=={installed(name)}" for name in EXTRA_REQUIREMENTS if name not in named)]


def example_jpeg() -> bytes:
    """A small photo-like JPEG: what the MLflow UI shows as the request body to copy."""
    image = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _json(value: dict) -> str:
    import json

    return json.dumps(value, indent=2)
