"""Behavioural tests (Ribeiro et al. 2020, CheckList) of one trained tiny demo model: invariance,
direction and minimum functionality, each on images whose right answer is not in doubt."""

from __future__ import annotations

import io
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components import demo_data, shard, validate
from components.callbacks import PreciseBatchNorm
from components.config import DataConfig, build_config
from components.records import make_dataset
from components.train import compile_model

pytestmark = pytest.mark.slow

SIZE = 32


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, str]:
    """The improved variant as the scratch profile trains it (every layer; the standard stem keeps
    it cheap), a few epochs on a small demo dataset with a clear generator artifact;
    (model, manifest path). Positive class: REAL (label 1)."""
    root = tmp_path_factory.mktemp("behaviour")
    data_root = root / "data"
    demo_data.run(
        demo_data.DemoDataConfig(
            out_dir=str(data_root), train_per_class=96, test_per_class=24, image_size=SIZE, artifact_strength=2.0, include_defects=False
        )
    )
    data = DataConfig(root=str(data_root), image_size=SIZE, encoding="png", images_per_shard=64)
    validated = validate.run(validate.ValidateConfig(data=data, work_dir=str(root / "work")))
    manifest_path = shard.run(
        shard.ShardConfig(
            data=data, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=str(root / "work")
        )
    ).manifest_path
    variant = build_config("improved", "scratch", {"variant": {"model": {"stem": "standard"}}}).variant
    keras.utils.set_random_seed(0)
    model = compile_model(variant.model, variant.fit, SIZE)
    train = make_dataset(manifest_path, "train", 32, training=True, dtype=tf.uint8)
    # As train.run does for this profile: BatchNorm statistics from training batches, not the
    # moving averages a few dozen steps leave near their initial values.
    precise_bn = PreciseBatchNorm(make_dataset(manifest_path, "train", 32, training=True, seed=1, dtype=tf.uint8), 4)
    model.fit(train, epochs=EPOCHS, verbose=0)
    precise_bn.set_model(model)
    precise_bn.on_test_begin()
    return model, manifest_path


EPOCHS = 6


def _p_ai(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """P(AI-generated): the model scores P(REAL)."""
    return 1.0 - model.predict_on_batch(np.asarray(images, dtype=np.float32)).ravel()


def _test_split(manifest_path: str) -> tuple[np.ndarray, np.ndarray]:
    batches = list(make_dataset(manifest_path, "test", 64, dtype=tf.uint8))
    return np.concatenate([b.numpy() for b, _ in batches]), np.concatenate([y.numpy().ravel() for _, y in batches]).astype(int)


def _checkerboard(image: np.ndarray) -> np.ndarray:
    """What a transposed convolution leaves: every other pixel on a period-2 grid brightened."""
    grid = np.zeros(image.shape[:2], dtype=np.float32)
    grid[::2, ::2] = 1.0
    return np.clip(image.astype(np.float32) + 24.0 * (grid[..., None] - 0.25), 0, 255).astype(np.uint8)


def _via(image: np.ndarray, **save: object) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **save)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_minimum_functionality_obvious_cases_are_right(trained):
    model, manifest_path = trained
    images, labels = _test_split(manifest_path)
    p_ai = _p_ai(model, images)
    generated = labels == 0
    accuracy = np.mean((p_ai >= 0.5) == generated)
    print("behaviour accuracy", accuracy, "mean p_ai fake", p_ai[generated].mean(), "real", p_ai[~generated].mean())
    assert accuracy >= 0.8


def test_invariance_png_and_high_quality_jpeg_get_the_same_verdict(trained):
    model, manifest_path = trained
    images, _ = _test_split(manifest_path)
    as_png = np.stack([_via(image, format="PNG") for image in images])
    as_jpeg = np.stack([_via(image, format="JPEG", quality=95, subsampling=0) for image in images])
    agreement = np.mean((_p_ai(model, as_png) >= 0.5) == (_p_ai(model, as_jpeg) >= 0.5))
    print("behaviour agreement", agreement)
    assert agreement >= 0.9


def test_directional_checkerboard_artifact_raises_p_ai_generated(trained):
    model, manifest_path = trained
    images, labels = _test_split(manifest_path)
    real = images[labels == 1]
    before, after = _p_ai(model, real), _p_ai(model, np.stack([_checkerboard(image) for image in real]))
    print("behaviour direction", before.mean(), after.mean(), np.mean(after > before))
    assert after.mean() > before.mean() and np.mean(after > before) >= 0.8
