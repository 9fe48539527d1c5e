"""Score images with a registered model: the probability that each one is AI-generated.

Images go through the same decode, normalisation, resize and re-encoding the model's training
shards went through (read from the manifest logged with its run), so a JPEG-trained model is
not shown pristine pixels it never saw. The label uses the threshold tuned on validation.
"""

from __future__ import annotations

import io
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from PIL import Image

from components.cli_support import component_main
from components.config import Strict
from components.images import UnusableImage, prepare_example
from components.model import ImageNetPreprocess  # noqa: F401  registers the layer for load_model

MAX_PIXELS = 89_478_485


class PredictConfig(Strict):
    images: str
    model_uri: str = "models:/ai-image-detector@champion"
    batch_size: int = 64


class Prediction(Strict):
    path: str
    p_ai_generated: float
    label: str


class PredictResult(Strict):
    model_uri: str
    positive_class: str
    threshold: float  # on P(positive_class), tuned on validation
    predictions: list[Prediction]
    skipped: dict[str, str]


def run(cfg: PredictConfig) -> PredictResult:
    info = mlflow.models.get_model_info(cfg.model_uri)
    manifest = mlflow.artifacts.load_dict(f"runs:/{info.run_id}/data/manifest.json")
    # The tuned threshold cuts P(positive class); fall back to the report's 0.5 if none was tuned.
    threshold = MlflowClient().get_run(info.run_id).data.metrics.get("test_tuned/threshold", 0.5)
    model = mlflow.keras.load_model(cfg.model_uri)
    positive, generated = manifest["positive_class"], manifest["generated_class"]
    negative = next(name for name in manifest["class_names"] if name != positive)
    paths = _image_paths(Path(cfg.images))
    predictions, skipped = [], {}
    for start in range(0, len(paths), cfg.batch_size):  # batch by batch: memory stays flat
        pixels, kept = [], []
        for path in paths[start : start + cfg.batch_size]:
            try:
                pixels.append(_as_trained(path, manifest))
                kept.append(path)
            except UnusableImage as error:
                skipped[str(path)] = str(error)
        scores = model.predict_on_batch(np.stack(pixels)).ravel() if pixels else []
        for path, score in zip(kept, scores):
            p_generated = float(score) if positive == generated else 1.0 - float(score)
            predictions.append(Prediction(path=str(path), p_ai_generated=p_generated, label=positive if score >= threshold else negative))
    return PredictResult(model_uri=cfg.model_uri, positive_class=positive, threshold=threshold, predictions=predictions, skipped=skipped)


def _image_paths(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise FileNotFoundError(f"No such image or folder. Received: images={str(target)!r}")
    return sorted(path for path in target.rglob("*") if path.is_file() and not path.name.startswith("."))


def _as_trained(path: Path, manifest: dict) -> np.ndarray:
    encoding = manifest["encoding"]
    job = (str(path), manifest["image_size"], encoding["codec"], encoding["jpeg_quality"] or 95, MAX_PIXELS, None, 0)
    return np.asarray(Image.open(io.BytesIO(prepare_example(job))).convert("RGB"), dtype=np.float32)


def main(argv: list[str] | None = None) -> None:
    component_main("detector predict", __doc__, PredictConfig, run, argv)


if __name__ == "__main__":
    main()
