"""Precise BatchNorm: before validation, trainable BatchNorms hold the mean batch statistics."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from components.callbacks import PreciseBatchNorm


def test_statistics_are_the_mean_over_the_training_batches_and_momentum_is_restored():
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(4)
    model = keras.Sequential([keras.Input((8,)), dense, keras.layers.BatchNormalization(momentum=0.9)])
    batches = [np.random.default_rng(index).normal(index, 1.0 + index, (16, 8)).astype("float32") for index in range(3)]
    dataset = tf.data.Dataset.from_tensor_slices((np.concatenate(batches), np.zeros((48, 1)))).batch(16)
    callback = PreciseBatchNorm(dataset, batches=3)
    callback.set_model(model)

    callback.on_test_begin()

    features = [keras.ops.convert_to_numpy(dense(batch)) for batch in batches]
    norm = model.layers[-1]
    np.testing.assert_allclose(norm.moving_mean.numpy(), np.mean([f.mean(axis=0) for f in features], axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm.moving_variance.numpy(), np.mean([f.var(axis=0) for f in features], axis=0), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.9
