"""Score images with a registered model: the probability that each one is AI-generated.

Images go through the same decode, normalisation, resize and re-encoding the model's training
shards went through (components/serving/scoring.py, from the manifest logged with its run), so
a JPEG-trained model is not shown pristine pixels it never saw. The label uses the version's
threshold tuned on validation.
For a model trained with `data.fit=crop`, `crops=5` averages the scores of five crops per image
(components/data/fit.py, `multi_crops`); every other fit scores the one image it makes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from components.cli_support import component_main
from components.config import DataConfig, Strict
from components.contracts import CHAMPION, DEFAULT_REGISTERED_MODEL
from components.data.fit import TEST_CROPS
from components.data.guard import guarded
from components.data.images import list_entries, prepare_example, printable
from components.serving import scoring


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
    threshold_p_ai: float  # the same cut on P(AI-generated): what users read
    generated_class: str
    predictions: list[Prediction]
    skipped: dict[str, str]


def run(cfg: PredictConfig) -> PredictResult:
    detector = scoring.load_registered(cfg.model_uri)  # keras flavour, safe mode, SHA-256 checked
    manifest = detector.manifest
    positive = manifest.positive_class
    negative = next(name for name in manifest.class_names if name != positive)
    predictions, skipped = [], {}
    for paths, pixels, failures in prepared_batches(image_paths(Path(cfg.images)), detector, cfg):
        skipped.update(failures)
        for path, score in zip(paths, detector.positive_scores(pixels)):
            answer = detector.answer(float(score))
            label = positive if detector.is_positive(float(score)) else negative
            predictions.append(Prediction(path=path, p_ai_generated=answer.p_ai_generated, label=label))
    return PredictResult(
        model_uri=cfg.model_uri,
        positive_class=positive,
        threshold=detector.threshold,
        threshold_p_ai=detector.threshold_ai,
        generated_class=manifest.generated_class,
        predictions=predictions,
        skipped=skipped,
    )


def prepared_batches(
    paths: list[Path], detector: scoring.Detector, cfg: PredictConfig
) -> Iterator[tuple[list[str], list[np.ndarray], dict[str, str]]]:
    """(paths, pixels, failures) batch by batch, so memory stays flat. Each image is decoded in a
    guarded worker: a file that fails, hangs or kills its worker becomes its own skipped entry,
    and the rest of its batch is still scored."""
    jobs = [detector.job(str(path), cfg.crops) for path in paths]
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
                    pixels.append(detector.pixels(outcome.value, cfg.crops))
            yield kept, pixels, failures


def image_paths(target: Path) -> list[Path]:
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
