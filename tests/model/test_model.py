from __future__ import annotations

import keras
import numpy as np
import pytest

from components.config import BASELINE, IMPROVED, ModelConfig
from components.training.model import ImageNetPreprocess, build_model, count_parameters

# The origin report's counts; they don't depend on the input size.
EXPECTED = {"baseline": (24_637_313, 1_049_601), "improved": (24_770_689, 6_701_825)}


@pytest.mark.parametrize("variant", [BASELINE, IMPROVED], ids=["baseline", "improved"])
def test_parameter_counts_match_the_report(variant):
    model = build_model(variant.model.with_changes(backbone_weights="none"), image_size=32)
    assert count_parameters(model) == EXPECTED[variant.name]


def test_improved_trains_exactly_the_last_15_backbone_layers():
    model = build_model(IMPROVED.model.with_changes(backbone_weights="none"), image_size=32)
    backbone = model.get_layer("resnet50")
    flags = [layer.trainable for layer in backbone.layers]
    assert flags[-15:] == [True] * 15 and not any(flags[:-15])
    assert backbone.layers[-15].name == "conv5_block2_2_relu"


def test_imagenet_preprocessing_matches_keras_and_survives_saving(tmp_path):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ImageNetPreprocess()(pixels)), expected, rtol=1e-5, atol=1e-4)
    model = build_model(ModelConfig(backbone_weights="none", preprocessing="imagenet"), image_size=32)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0), rtol=1e-5)


def test_too_many_trainable_layers_names_the_field():
    with pytest.raises(ValueError, match=r"model.trainable_backbone_layers=999"):
        build_model(ModelConfig(backbone_weights="none", trainable_backbone_layers=999), image_size=32)


def test_missing_weights_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"backbone_weights=.*'none'"):
        build_model(ModelConfig(backbone_weights=str(tmp_path / "absent.h5")), image_size=32)


def test_failed_imagenet_download_names_the_alternatives(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.resnet.file_utils.get_file", offline)
    with pytest.raises(RuntimeError, match=r"Could not download the ImageNet ResNet50 weights .*'none'"):
        build_model(ModelConfig(backbone_weights="imagenet"), image_size=32)
