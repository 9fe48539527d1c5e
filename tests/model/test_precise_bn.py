"""Precise BatchNorm: before validation, trainable BatchNorms hold the mean batch statistics (any backend)."""

from __future__ import annotations

import keras
import numpy as np

from components.training.callbacks import PreciseBatchNorm


def test_statistics_are_the_mean_over_the_training_batches_and_momentum_is_restored():
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(4)
    model = keras.Sequential([keras.Input((8,)), dense, keras.layers.BatchNormalization(momentum=0.9)])
    batches = [np.random.default_rng(index).normal(index, 1.0 + index, (16, 8)).astype("float32") for index in range(3)]
    dataset = [(batch, np.zeros((16, 1))) for batch in batches]  # any iterable of batches, as both readers are
    callback = PreciseBatchNorm(dataset, batches=3)
    callback.set_model(model)

    callback.on_test_begin()

    features = [keras.ops.convert_to_numpy(dense(batch)) for batch in batches]
    norm = model.layers[-1]
    mean, variance = (keras.ops.convert_to_numpy(value) for value in (norm.moving_mean, norm.moving_variance))
    np.testing.assert_allclose(mean, np.mean([f.mean(axis=0) for f in features], axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(variance, np.mean([f.var(axis=0) for f in features], axis=0), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.9
