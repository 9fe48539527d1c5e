"""The detector, built per variant on the functional API: the report's ResNet50, or NPR's
truncated one on neighbouring-pixel residuals (components/training/npr.py).

The model takes raw RGB pixels in [0, 255] and carries its own preprocessing, so whoever loads
it from the registry feeds images as they are. Its sigmoid output is the probability of the
positive class (label 1 in Keras' alphabetical order: REAL); the prediction interface turns it
into the probability that an image is AI-generated.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np

from components.config import RESNET50_LAYERS, ModelConfig
from components.training import npr
from components.training.augment import RandomAffine  # registered here too, so loaders that import this module can load it

# Caffe-style means (BGR) that keras.applications.resnet50.preprocess_input subtracts.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
WEIGHTS_HELP = (
    "Set model.backbone_weights to 'none' (random init, as the demo profile does) or to a local copy of "
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 downloaded on a machine with internet."
)


@keras.saving.register_keras_serializable(package="detector")
class ImageNetPreprocess(keras.layers.Layer):
    """resnet50.preprocess_input as a layer (RGB→BGR, minus the ImageNet mean), so it is saved with the model."""

    def call(self, inputs):
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=inputs.dtype)


class FrozenRandomFeatures(UserWarning):
    """Frozen layers without pretrained weights stay random noise. A warning, not an error, so the
    report's variants still run offline exactly as defined (the demo profile); not a
    DetectorWarning, because the test suite runs those variants on purpose."""

    def __init__(self, frozen: int, trainable: int) -> None:
        super().__init__(
            f"model.backbone_weights='none' with model.trainable_backbone_layers={trainable}: {frozen} backbone layers stay frozen "
            f"at random initialisation. Train every layer (the scratch profile, trainable_backbone_layers={RESNET50_LAYERS}) or "
            "give pretrained weights."
        )


def build_model(cfg: ModelConfig, image_size: int, augment: dict | None = None) -> keras.Model:
    """`augment`: a live augmentation policy to apply in the train step (components/training/augment.py)."""
    backbone = _backbone(cfg, image_size)  # first: it checks what the layers before it would trip on
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    if augment:
        x = RandomAffine(**augment, name="augment")(x)
    if cfg.preprocessing == "unit":
        x = keras.layers.Rescaling(1.0 / 255, name="unit_scale")(x)
    else:
        x = ImageNetPreprocess(name="imagenet_preprocess")(x)
    if cfg.architecture == "npr":
        x = npr.NearestResidual(name="nearest_residual")(x)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    for index, units in enumerate(cfg.head_units, start=1):
        if cfg.head_batchnorm:
            # No bias before BatchNorm: its beta already plays that role.
            x = keras.layers.Dense(units, use_bias=False, name=f"head_dense_{index}")(x)
            x = keras.layers.BatchNormalization(name=f"head_bn_{index}")(x)
            x = keras.layers.Activation("relu", name=f"head_relu_{index}")(x)
        else:
            x = keras.layers.Dense(units, activation="relu", name=f"head_dense_{index}")(x)
        x = keras.layers.Dropout(cfg.dropout, name=f"head_dropout_{index}")(x)
    # float32 output keeps the sigmoid stable under a mixed-precision policy.
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(inputs, outputs, name=f"{cfg.architecture}_detector")


def _backbone(cfg: ModelConfig, image_size: int) -> keras.Model:
    weights = None if cfg.architecture == "npr" else _resolve_weights(cfg.backbone_weights)
    backbone = npr.backbone(image_size) if cfg.architecture == "npr" else _resnet50(cfg, image_size, weights)
    if cfg.zero_init_residual:
        zero_init_residual(backbone)
    layer_count = len(backbone.layers)
    if cfg.trainable_backbone_layers > layer_count:
        raise ValueError(
            f"The {cfg.architecture} backbone has {layer_count} layers. "
            f"Received: model.trainable_backbone_layers={cfg.trainable_backbone_layers}"
        )
    if weights is None and 0 < layer_count - cfg.trainable_backbone_layers:
        warnings.warn(FrozenRandomFeatures(layer_count - cfg.trainable_backbone_layers, cfg.trainable_backbone_layers), stacklevel=3)
    backbone.trainable = cfg.trainable_backbone_layers > 0
    for layer in backbone.layers[: layer_count - cfg.trainable_backbone_layers]:
        layer.trainable = False
    return backbone


def _resnet50(cfg: ModelConfig, image_size: int, weights: str | None) -> keras.Model:
    if cfg.zero_init_residual and weights is not None:  # checked before any download
        raise ValueError(
            "model.zero_init_residual=true would overwrite the pretrained weights' BatchNorm; use it with random init. "
            f"Received: model.backbone_weights={cfg.backbone_weights!r}"
        )
    try:
        backbone = keras.applications.ResNet50(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
    except Exception as error:  # the download raises whatever urllib or the proxy gives
        if weights != "imagenet":
            raise
        raise RuntimeError(f"Could not download the ImageNet ResNet50 weights ({error}). {WEIGHTS_HELP}") from error
    return preserve_resolution(backbone) if cfg.stem == "preserve" else backbone


def preserve_resolution(backbone: keras.Model) -> keras.Model:
    """The same ResNet50 with conv1 at stride 1 and the stem's max-pool an identity (Gragnaniello
    et al. 2021): at 32 px the standard stem throws away 15 of every 16 pixels, and with them the
    generator's highest-frequency traces. Same layers, same weights, same parameter count."""

    def rebuilt(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if layer.name == "conv1_conv":
            return type(layer).from_config({**config, "strides": (1, 1)})
        if layer.name in ("pool1_pad", "pool1_pool"):
            return keras.layers.Identity(name=layer.name)
        return type(layer).from_config(config)

    clone = keras.models.clone_model(backbone, clone_function=rebuilt)
    clone.set_weights(backbone.get_weights())
    return clone


def zero_init_residual(backbone: keras.Model) -> None:
    """Set gamma of each residual branch's last BatchNorm (`convN_blockM_3_bn`) to zero (Goyal et
    al. 2017, "Accurate, Large Minibatch SGD"): every block starts as its shortcut, so the
    signal and its gradient reach the head through 16 blocks unscaled by random layers.
    From scratch, the standard init leaves the loss flat for the first few dozen steps
    (tests/model/test_behavioral.py); this starts learning at once."""
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name.endswith("_3_bn"):
            layer.gamma.assign(np.zeros(layer.gamma.shape, dtype=layer.gamma.dtype))


def _resolve_weights(name: str) -> str | None:
    if name == "imagenet":
        return "imagenet"
    if name == "none":
        return None
    if not Path(name).is_file():
        raise FileNotFoundError(f"Backbone weights file not found. Received: model.backbone_weights={name!r}. {WEIGHTS_HELP}")
    return name


def count_parameters(model: keras.Model) -> tuple[int, int]:
    """(total, trainable), counted as Keras' summary counts them."""
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    return model.count_params(), trainable
