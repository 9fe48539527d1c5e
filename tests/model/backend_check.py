"""Run by test_backends.py in a fresh process under the backend KERAS_BACKEND names (fixed at import).

Usage:
  python tests/model/backend_check.py train MANIFEST WORK_DIR DATA_JSON REGISTERED_MODEL IMAGES
      train one epoch, evaluate, register and predict; prints one JSON line.
  python tests/model/backend_check.py serve MANIFEST MODEL_URI IMAGES OUT_DIR
      evaluate and predict a registered model trained elsewhere; prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import mlflow

from components import evaluate, predict, registry, train
from components.config import build_config


def serve(manifest_path: str, model_uri: str, images: str, out_dir: str) -> dict:
    model_path = str(Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=out_dir)) / "data" / "model.keras")
    evaluated = evaluate.run(evaluate.EvaluateConfig(manifest_path=manifest_path, model_path=model_path, output_dir=out_dir))
    predicted = predict.run(predict.PredictConfig(images=images, model_uri=model_uri))
    return {
        "backend": keras.backend.backend(),
        "test": evaluated.test,
        "predictions": {row.path: row.p_ai_generated for row in predicted.predictions},
    }


def train_and_register(manifest_path: str, work_dir: str, data: dict, registered_model: str, images: str) -> dict:
    overrides = {"data": data, "work_dir": work_dir, "variant": {"fit": {"epochs": 1, "batch_size": 16, "precise_bn_batches": 2}}}
    trained = train.run(train.TrainConfig(pipeline=build_config("improved", "demo", overrides), manifest_path=manifest_path))
    evaluated = evaluate.run(
        evaluate.EvaluateConfig(
            manifest_path=manifest_path, model_path=trained.model_path, run_id=trained.run_id, output_dir=f"{work_dir}/eval"
        )
    )
    registry.run(
        registry.RegistryConfig(
            registered_model=registered_model,
            model_uri=trained.model_uri,
            run_id=trained.run_id,
            variant="improved",
            dataset_fingerprint="tiny",
            threshold=evaluated.threshold,
            metrics=evaluated.test,
        )
    )
    champion = f"models:/{registered_model}@champion"
    predicted = predict.run(predict.PredictConfig(images=images, model_uri=champion))
    requirements = Path(mlflow.artifacts.download_artifacts(trained.model_uri, dst_path=f"{work_dir}/req")) / "requirements.txt"
    return {
        "backend": keras.backend.backend(),
        "run_id": trained.run_id,
        "model_uri": champion,
        "layers": [layer.name for layer in keras.models.load_model(trained.model_path).layers],
        "requirements": requirements.read_text().split(),
        "test": evaluated.test,
        "predictions": {row.path: row.p_ai_generated for row in predicted.predictions},
    }


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    if mode == "train":
        manifest, work, data_json, name, folder = arguments
        outcome = train_and_register(manifest, work, json.loads(data_json), name, folder)
    else:
        outcome = serve(*arguments)
    print(json.dumps(outcome))
