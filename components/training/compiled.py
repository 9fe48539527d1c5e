"""The variant's model, compiled for training: shared by train and the GPU bench, MLflow-free."""

from __future__ import annotations

import keras

from components.config import FitConfig, ModelConfig
from components.training import accelerator
from components.training.model import build_model


def compile_model(
    model_cfg: ModelConfig, fit: FitConfig, image_size: int, placement: accelerator.Placement | None = None, augment: dict | None = None
) -> keras.Model:
    """The variant's model with the report's optimizer, loss and metrics, at the placement's
    learning rate and XLA setting (the config's own values without one). `augment`: a live
    policy for the in-model RandomAffine layer. Under mixed_float16, Keras' compile wraps the
    optimizer in a LossScaleOptimizer."""
    model = build_model(model_cfg, image_size, augment)
    compile_at(model, placement.learning_rate if placement else fit.learning_rate, placement.jit_compile if placement else "auto")
    return model


def compile_at(model: keras.Model, learning_rate: float, jit_compile: bool | str = "auto") -> None:
    """A fresh Adam at `learning_rate` with the report's loss and metrics (each fine-tuning stage starts one).

    Weighted, loss and metrics alike: with several devices, evaluation pads its last batch with
    copies of weight 0 (components/data/reader.py), which Keras' plain `metrics` would count and
    its default loss reduction would divide by. Training batches carry no weights, so there
    both are what they were."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(reduction="mean_with_sample_weight"),
        jit_compile=jit_compile,
        weighted_metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
        ],
    )
