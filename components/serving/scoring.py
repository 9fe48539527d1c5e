"""The one way a registered version turns images into verdicts, whoever asks: `detector predict`
on files, the registry's MLflow serving model (`mlflow models serve`), `detector serve` and
batch scoring all hold a `Detector` and go through its preparation and threshold.

Each image gets the decode, fit and re-encoding its version's training shards got (from the shard
manifest), so a JPEG-trained model is never shown pixels unlike the ones it learnt from. The
model scores P(positive class) (REAL, the origin report's convention); what leaves here is
P(AI-generated) and a verdict at the version's threshold tuned on validation, with the threshold
put on the same P(AI-generated) scale.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from components.config import Strict
from components.contracts import Manifest
from components.data.fit import TRAIN_CROP_MARGIN, multi_crops
from components.data.images import ImageJob, UnusableImage, prepare_bytes
from components.registry import loading
from components.registry.tags import positive_threshold

MAX_PIXELS = 89_478_485  # Pillow's own bomb limit: far above any photo, far below what exhausts memory
AI_GENERATED, REAL = "AI-generated", "real"
BATCH = 64  # images per forward pass: bounds memory whatever a caller sends at once


class Score(Strict):
    """One image's answer: the fields the serving model, `detector serve` and the score stage return."""

    p_ai_generated: float | None
    verdict: str | None  # "AI-generated" or "real"; None with the error
    threshold: float  # on P(AI-generated): verdict is AI-generated above it
    model_version: str
    error: str | None = None  # why this image was not scored; the others still are


@dataclass(frozen=True)
class Detector:
    model: Any  # a Keras model
    manifest: Manifest
    threshold: float  # as tuned: on P(manifest.positive_class)
    version: str  # "3", or where it came from when it is not a registry version
    max_pixels: int = MAX_PIXELS  # an image with more is refused before it is decoded
    run_id: str | None = None  # the training run, where evaluation logged the test split's scores

    @property
    def positive_is_generated(self) -> bool:
        return self.manifest.positive_class == self.manifest.generated_class

    @property
    def threshold_ai(self) -> float:
        return self.manifest.p_generated(self.threshold)

    def job(self, path: str = "", crops: int = 1) -> ImageJob:
        """How an image is prepared for this version; `path` only for `prepare_example` on files."""
        fit = self.manifest.fit
        margin = TRAIN_CROP_MARGIN if fit == "crop" and crops > 1 else 1  # multi-crop cuts its crops after decoding
        quality = self.manifest.encoding.serving_quality
        return ImageJob(path, self.manifest.image_size, self.manifest.encoding.codec, quality, self.max_pixels, fit=fit, margin=margin)

    def pixels(self, prepared: bytes, crops: int = 1) -> np.ndarray:
        """The model's input for one prepared image: HxWx3 float pixels, or a stack of crops."""
        decoded = np.asarray(Image.open(io.BytesIO(prepared)).convert("RGB"), dtype=np.float32)
        crops = crops if self.manifest.fit == "crop" else 1
        return multi_crops(decoded, self.manifest.image_size, crops) if crops > 1 else decoded

    def positive_scores(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """P(positive class) per image; an image given as a stack of crops scores its crops' mean."""
        if not pixels:
            return np.zeros(0)
        if pixels[0].ndim == 3:
            return np.asarray(self.model.predict_on_batch(np.stack(pixels))).ravel()
        count = len(pixels[0])
        return np.asarray(self.model.predict_on_batch(np.concatenate(pixels))).ravel().reshape(-1, count).mean(axis=1)

    def is_positive(self, score: float) -> bool:
        return score >= self.threshold

    def answer(self, score: float) -> Score:
        p_generated = self.manifest.p_generated(score)
        generated = self.is_positive(score) == self.positive_is_generated
        verdict = AI_GENERATED if generated else REAL
        return Score(p_ai_generated=p_generated, verdict=verdict, threshold=self.threshold_ai, model_version=self.version)

    def refusal(self, reason: str) -> Score:
        return Score(p_ai_generated=None, verdict=None, threshold=self.threshold_ai, model_version=self.version, error=reason)

    def score(self, images: Sequence[bytes | None]) -> list[Score]:
        """One Score per image, in order. Decoding is in this process, bounded by the pixel cap;
        an unusable image (or None, for one the caller could not read) gets its reason, never an
        exception."""
        answers: list[Score | None] = [None] * len(images)
        for start in range(0, len(images), BATCH):
            kept, pixels = [], []
            for index in range(start, min(start + BATCH, len(images))):
                data = images[index]
                try:
                    if data is None:
                        raise UnusableImage("no image bytes")
                    pixels.append(self.pixels(prepare_bytes(bytes(data), self.job())))
                    kept.append(index)
                except UnusableImage as error:
                    answers[index] = self.refusal(str(error))
            for index, score in zip(kept, self.positive_scores(pixels)):
                answers[index] = self.answer(float(score))
        return answers  # type: ignore[return-value]  every slot is filled above


def load_registered(model_uri: str) -> Detector:
    """A registry version (models:/<name>/<version> or @alias) as a Detector. The alias is
    resolved once, so the model, manifest and threshold all belong to the same version."""
    import mlflow

    version = loading.resolve_version(model_uri)
    model = loading.load_registered(f"models:/{version.name}/{version.version}")
    manifest = Manifest.model_validate(mlflow.artifacts.load_dict(f"runs:/{version.run_id}/data/manifest.json"))
    return Detector(model, manifest, registered_threshold(version), str(version.version), run_id=version.run_id)


def registered_threshold(version) -> float:
    """The threshold registration recorded; the run's tuned metric for versions older than that
    tag; the report's 0.5 when none was tuned."""
    threshold = positive_threshold(version.tags)
    if threshold is not None:
        return threshold
    from mlflow import MlflowClient

    value = MlflowClient().get_run(version.run_id).data.metrics.get("test_tuned/threshold", 0.5)
    return 0.5 if math.isnan(value) else value
