"""Score images with a registered model: the probability that each one is AI-generated.

Images go through the same decode, normalisation, resize and re-encoding the model's training
shards went through (read from the manifest logged with its run), so a JPEG-trained model is
not shown pristine pixels it never saw. The label uses the threshold tuned on validation.
For a model trained with `data.fit=crop`, `crops=5` averages the scores of five crops per image
(components/data/fit.py, `multi_crops`); every other fit scores the one image it makes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from PIL import Image
from pydantic import Field, field_validator

from components.cli_support import component_main
from components.config import DataConfig, Strict
from components.contracts import CHAMPION, DEFAULT_REGISTERED_MODEL, Manifest
from components.data.fit import TEST_CROPS, TRAIN_CROP_MARGIN, multi_crops
from components.data.guard import guarded
from components.data.images import ImageJob, list_entries, prepare_example, printable
from components.registry import loading
from components.training.model import ImageNetPreprocess  # noqa: F401  registers the layer for load_model

MAX_PIXELS = 89_478_485


class PredictConfig(Strict):
    images: str
    model_uri: str = f"models:/{DEFAULT_REGISTERED_MODEL}@{CHAMPION}"
    batch_size: int = 64
    workers: int = 0  # 0 means one per core
    decode_timeout_seconds: float = Field(DataConfig().decode_timeout_seconds, gt=0)
    decode_memory_mb: int = Field(DataConfig().decode_memory_mb, ge=64)
    crops: int = Field(1, description="For data.fit=crop models: 1 (the centre crop) or 5 (centre and corners, scores averaged).")

    @field_validator("crops")
    @classmethod
    def _known_crops(cls, value: int) -> int:
        if value not in TEST_CROPS:
            raise ValueError(f"must be one of {TEST_CROPS}. Received: crops={value}")
        return value


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
    logged = mlflow.artifacts.load_dict(f"runs:/{info.run_id}/data/manifest.json")
    # The tuned threshold cuts P(positive class); fall back to the report's 0.5 if none was tuned.
    threshold = MlflowClient().get_run(info.run_id).data.metrics.get("test_tuned/threshold", 0.5)
    model = loading.load_registered(cfg.model_uri)  # keras flavour, safe mode, SHA-256 checked
    manifest = Manifest.model_validate(logged)  # after the model's checks: a refused model is refused first
    positive, generated = manifest.positive_class, manifest.generated_class
    negative = next(name for name in manifest.class_names if name != positive)
    predictions, skipped = [], {}
    for paths, pixels, failures in prepared_batches(_image_paths(Path(cfg.images)), manifest, cfg):
        skipped.update(failures)
        scores = _scores(model, pixels)
        for path, score in zip(paths, scores):
            p_generated = float(score) if positive == generated else 1.0 - float(score)
            predictions.append(Prediction(path=path, p_ai_generated=p_generated, label=positive if score >= threshold else negative))
    return PredictResult(model_uri=cfg.model_uri, positive_class=positive, threshold=threshold, predictions=predictions, skipped=skipped)


def _scores(model, pixels: list[np.ndarray]) -> np.ndarray:
    """One score per image; an image given as a stack of crops scores the mean over its crops."""
    if not pixels:
        return np.zeros(0)
    if pixels[0].ndim == 3:
        return model.predict_on_batch(np.stack(pixels)).ravel()
    count = len(pixels[0])
    return model.predict_on_batch(np.concatenate(pixels)).ravel().reshape(-1, count).mean(axis=1)


def prepared_batches(
    paths: list[Path], manifest: Manifest, cfg: PredictConfig
) -> Iterator[tuple[list[str], list[np.ndarray], dict[str, str]]]:
    """(paths, pixels, failures) batch by batch, so memory stays flat. Each image is decoded in a
    guarded worker: a file that fails, hangs or kills its worker becomes its own skipped entry,
    and the rest of its batch is still scored."""
    fit, size = manifest.fit, manifest.image_size
    crops = cfg.crops if fit == "crop" else 1
    # Multi-crop keeps the margin training crops were drawn from; the crops are cut after decoding.
    margin = TRAIN_CROP_MARGIN if crops > 1 else 1
    quality = manifest.encoding.jpeg_quality or 95
    jobs = [ImageJob(str(path), size, manifest.encoding.codec, quality, MAX_PIXELS, fit=fit, margin=margin) for path in paths]
    workers = min(cfg.workers or os.cpu_count() or 1, max(1, len(jobs)))
    with guarded(workers, cfg.decode_timeout_seconds, cfg.decode_memory_mb) as guard:
        outcomes = zip(paths, guard.map(prepare_example, jobs))
        while batch := list(islice(outcomes, cfg.batch_size)):
            kept, pixels, failures = [], [], {}
            for path, outcome in batch:
                if outcome.error is not None:
                    failures[printable(str(path))] = outcome.error
                else:
                    kept.append(printable(str(path)))
                    decoded = np.asarray(Image.open(io.BytesIO(outcome.value)).convert("RGB"), dtype=np.float32)
                    pixels.append(multi_crops(decoded, size, crops) if crops > 1 else decoded)
            yield kept, pixels, failures


def _image_paths(target: Path) -> list[Path]:
    """A link given by name is the user's choice; links inside a folder are listed and refused
    when read, never followed."""
    if target.is_file():
        return [Path(os.path.realpath(target)) if target.is_symlink() else target]
    if not target.is_dir():
        raise FileNotFoundError(f"No such image or folder. Received: images={printable(str(target))!r}")
    return [path for path in list_entries(target) if not path.name.startswith(".")]


def main(argv: list[str] | None = None) -> None:
    component_main("detector predict", __doc__, PredictConfig, run, argv)


if __name__ == "__main__":
    main()
