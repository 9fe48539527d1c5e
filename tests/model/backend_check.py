"""The suite's one JAX process (test_backends.py starts it; the backend is fixed when keras is
first imported, and the suite's own process runs TensorFlow). One process, not one per check:
each would import JAX and trace ResNet50 again, and the JAX run the distribution check trains is
a whole training already, so it is the one registered and served under TensorFlow.

In order, each reported as JSON in a file:
  1. trained.json: the distribution check (distributed_check.py) on two emulated host devices,
     whose resumed run is then evaluated, registered as `registered_model` and its champion
     predicted, in the store MLFLOW_TRACKING_URI names;
  2. served.json, once a line on stdin names a TensorFlow-trained model (the test's session
     trains it meanwhile): that model evaluated and served here, from its own store.

Usage: python tests/model/backend_check.py SPEC_JSON < SERVE_JSON
  SPEC_JSON: {"manifest", "work_dir", "data", "registered_model", "images"}; reports land in work_dir
  SERVE_JSON: {"store", "manifest", "model_uri", "images"}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import distributed_check  # this file's folder is on sys.path
import keras
import mlflow

from components.evaluation import evaluate
from components.registry import loading, register
from components.serving import predict


def served(manifest_path: str, model_uri: str, images: str, out_dir: str) -> dict:
    model_path = str(loading.keras_file(Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=out_dir)), model_uri))
    evaluated = evaluate.run(evaluate.EvaluateConfig(manifest_path=manifest_path, model_path=model_path, output_dir=out_dir))
    predicted = predict.run(predict.PredictConfig(images=images, model_uri=model_uri))
    return {
        "backend": keras.backend.backend(),
        "test": evaluated.test,
        "predictions": {row.path: row.p_ai_generated for row in predicted.predictions},
    }


def trained_and_registered(spec: dict) -> dict:
    distribution, trained = distributed_check.check(spec["manifest"], spec["work_dir"], spec["data"])
    evaluated = evaluate.run(
        evaluate.EvaluateConfig(
            manifest_path=spec["manifest"], model_path=trained.model_path, run_id=trained.run_id, output_dir=f"{spec['work_dir']}/eval"
        )
    )
    register.run(
        register.RegistryConfig(
            registered_model=spec["registered_model"],
            model_uri=trained.model_uri,
            run_id=trained.run_id,
            variant="improved",
            dataset_fingerprint="tiny",
            threshold=evaluated.threshold,
            metrics=evaluated.test,
        )
    )
    champion = f"models:/{spec['registered_model']}@champion"
    predicted = predict.run(predict.PredictConfig(images=spec["images"], model_uri=champion))
    requirements = Path(mlflow.artifacts.download_artifacts(trained.model_uri, dst_path=f"{spec['work_dir']}/req")) / "requirements.txt"
    return {
        "distribution": distribution,
        "backend": keras.backend.backend(),
        "run_id": trained.run_id,
        "model_uri": champion,
        "layers": [layer.name for layer in keras.models.load_model(trained.model_path).layers],
        "requirements": requirements.read_text().split(),
        "test": evaluated.test,
        "predictions": {row.path: row.p_ai_generated for row in predicted.predictions},
    }


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    reports = Path(spec["work_dir"])
    (reports / "trained.json").write_text(json.dumps(trained_and_registered(spec)))
    serve = json.loads(sys.stdin.readline())
    mlflow.set_tracking_uri(serve["store"])
    outcome = served(serve["manifest"], serve["model_uri"], serve["images"], str(reports / "served"))
    (reports / "served.json").write_text(json.dumps(outcome))
