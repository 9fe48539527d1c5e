"""NPR (Tan et al., CVPR 2024): a small ResNet that sees only neighbouring-pixel residuals.

Followed from the authors' code (chuangchuangtan/NPR-DeepfakeDetection, networks/resnet.py),
not from a summary. A generator's upsampling layers copy or interpolate neighbouring pixels, so
the residual `x - up(down(x))` (nearest neighbour, factor 2) keeps the local correlation they
leave and drops the content, which is what lets it hold on generators it never saw. The network
is ResNet50 cut after its second stage, with a 3×3 stride-2 stem: 1.44 M parameters, trained
from scratch.

Where this differs from the paper's code, and why:
- the input is scaled to [0, 1] rather than ImageNet-normalised: the residual cancels the mean,
  and the per-channel std is a scale the first BatchNorm absorbs;
- layer names follow keras.applications' ResNet50 (`conv2_block1_out`, ...), and the nested
  model is named `resnet50`, so Grad-CAM and zero-init find its blocks as they find ResNet50's.
"""

from __future__ import annotations

import keras

# The first two ResNet50 stages as torchvision builds them (stride on the 3×3 conv): blocks, width.
STAGES = ((3, 64), (4, 128))
# The paper's code scales the residual by 2/3 before the first conv.
RESIDUAL_SCALE = 2.0 / 3.0
# torch's BatchNorm2d defaults: momentum 0.1 (Keras counts it the other way) and eps 1e-5.
BN = {"momentum": 0.9, "epsilon": 1e-5}


def kaiming() -> keras.initializers.Initializer:
    """torchvision's init for these convs: kaiming_normal_, fan_out, relu. A fresh one per layer:
    an unseeded Keras initializer fixes its seed when made, so one shared instance, made at
    import, gave same-shaped layers the same weights, and different weights in every process
    (which training across processes refuses: every process must build the same model)."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


@keras.saving.register_keras_serializable(package="detector")
class NearestResidual(keras.layers.Layer):
    """x - up(down(x)), nearest neighbour, factor 2, times RESIDUAL_SCALE. Nearest downsampling
    by 2 keeps the top-left pixel of each 2×2 cell (torch's F.interpolate), and upsampling repeats
    it, so the residual is zero at that pixel and the difference from it at the other three."""

    def call(self, inputs):
        cells = inputs[:, ::2, ::2, :]
        copied = keras.ops.repeat(keras.ops.repeat(cells, 2, axis=1), 2, axis=2)
        return (inputs - copied) * RESIDUAL_SCALE


def backbone(image_size: int) -> keras.Model:
    """The truncated ResNet50 of the paper, up to its pooled 512 features' input."""
    if image_size % 2:
        raise ValueError(f"NPR's residual takes 2×2 cells, so the image size must be even. Received: image_size={image_size}")
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.ZeroPadding2D(1, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(64, 3, strides=2, use_bias=False, kernel_initializer=kaiming(), name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(**BN, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    # Zero padding before the max-pool equals torch's -inf padding after a ReLU.
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (blocks, width) in enumerate(STAGES, start=2):
        for block in range(1, blocks + 1):
            stride = 2 if stage > 2 and block == 1 else 1
            x = _bottleneck(x, width, stride, shortcut_conv=block == 1, name=f"conv{stage}_block{block}")
    return keras.Model(inputs, x, name="resnet50")


def _bottleneck(x, width: int, stride: int, shortcut_conv: bool, name: str):
    shortcut = x
    if shortcut_conv:
        shortcut = keras.layers.Conv2D(4 * width, 1, strides=stride, use_bias=False, kernel_initializer=kaiming(), name=f"{name}_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(**BN, name=f"{name}_0_bn")(shortcut)
    x = keras.layers.Conv2D(width, 1, use_bias=False, kernel_initializer=kaiming(), name=f"{name}_1_conv")(x)
    x = keras.layers.BatchNormalization(**BN, name=f"{name}_1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_2_pad")(x)
    x = keras.layers.Conv2D(width, 3, strides=stride, use_bias=False, kernel_initializer=kaiming(), name=f"{name}_2_conv")(x)
    x = keras.layers.BatchNormalization(**BN, name=f"{name}_2_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = keras.layers.Conv2D(4 * width, 1, use_bias=False, kernel_initializer=kaiming(), name=f"{name}_3_conv")(x)
    x = keras.layers.BatchNormalization(**BN, name=f"{name}_3_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)
