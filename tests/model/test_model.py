from __future__ import annotations

import keras
import numpy as np
import pytest

from components.config import BASELINE, IMPROVED, NPR, NPR_LAYERS, ModelConfig
from components.training.model import ImageNetPreprocess, build_model, count_parameters
from components.training.npr import NearestResidual

# The origin report's counts; they don't depend on the input size. NPR's by hand from the paper's
# code: convs 1,728 + 212,992 + 1,212,416, BatchNorm γ/β 10,112, the logit 513; plus 10,112 moving statistics.
EXPECTED = {"baseline": (24_637_313, 1_049_601), "improved": (24_770_689, 6_701_825), "npr": (1_447_873, 1_437_761)}


@pytest.mark.parametrize("variant", [BASELINE, IMPROVED, NPR], ids=["baseline", "improved", "npr"])
def test_parameter_counts_match_the_report(variant):
    model = build_model(variant.model.with_changes(backbone_weights="none"), image_size=32)
    assert count_parameters(model) == EXPECTED[variant.name]


def test_npr_residual_matches_a_hand_computation():
    # One 2×2 cell per channel: nearest down-then-up copies the top-left pixel over the cell.
    image = np.array([[1.0, 4.0, 2.0, 2.0], [7.0, 10.0, 2.0, 5.0], [0.0, 3.0, 9.0, 9.0], [6.0, 6.0, 9.0, 9.0]], dtype="float32")
    expected = np.array([[0, 3, 0, 0], [6, 9, 0, 3], [0, 3, 0, 0], [6, 6, 0, 0]], dtype="float32") * 2 / 3
    pixels = np.stack([image, image * 2, -image], axis=-1)[None]
    residual = keras.ops.convert_to_numpy(NearestResidual()(pixels))[0]
    for channel, scale in enumerate((1, 2, -1)):
        np.testing.assert_allclose(residual[..., channel], expected * scale, rtol=1e-6)


def test_npr_sees_only_the_residual_trains_every_layer_and_survives_saving(tmp_path):
    model = build_model(NPR.model, image_size=32)
    backbone = model.get_layer("resnet50")
    assert len(backbone.layers) == NPR_LAYERS and all(layer.trainable for layer in backbone.layers)
    assert [layer.name for layer in model.layers[:3]] == ["image", "unit_scale", "nearest_residual"]
    # Content that is constant over each 2×2 cell has no residual, so every such image scores the same.
    flat = np.kron(np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)), np.ones((1, 2, 2, 1))).astype("float32")
    noisy = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    scores = model.predict(np.concatenate([flat, noisy]), verbose=0).ravel()
    assert scores[0] == scores[1] and abs(scores[2] - scores[0]) > 1e-4
    model.save(tmp_path / "npr.keras")
    reloaded = keras.models.load_model(tmp_path / "npr.keras")
    np.testing.assert_allclose(reloaded.predict(noisy, verbose=0).ravel(), scores[2:], rtol=1e-5)


def test_npr_refuses_pretrained_weights_and_odd_sizes():
    with pytest.raises(ValueError, match=r"backbone_weights='none'"):
        ModelConfig(architecture="npr", backbone_weights="imagenet")
    with pytest.raises(ValueError, match=r"image_size=33"):
        build_model(NPR.model, image_size=33)


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
