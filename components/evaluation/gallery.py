"""The error gallery: the test images the model got most confidently wrong, each with a Grad-CAM
heatmap of what drove its verdict (Selvaraju et al. 2017, the keras.io recipe).

Scores are P(positive class), as in the metrics beside the gallery. Grad-CAM takes the gradient
of the model's confidence in its own verdict with respect to a feature map inside the backbone:
the deepest ResNet block output still at least 7×7 for the model's input size, since at 32 px
the backbone's last map is 1×1 and its heatmap one flat colour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import keras
import matplotlib
import numpy as np
from PIL import Image

from components.training.accelerator import input_gradient

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  after the backend is chosen

PER_KIND = 6
BACKBONE = "resnet50"  # the nested backbone's name in components/training/model.py
# The last map of a 224-px ResNet50, the resolution Grad-CAM was shown at (Selvaraju et al. 2017).
MIN_CAM_SIZE = 7
# A block's output is the one tensor every path through the backbone crosses at that depth, so
# the backbone splits there into two models with nothing else passed between them.
BLOCK_OUTPUT = re.compile(r"conv\d_block\d+_out")


@dataclass(frozen=True)
class Explanation:
    """Heatmaps per kind of error (None where none are drawn) and the sentence that says how."""

    heatmaps: dict[str, np.ndarray] | None
    note: str


def confident_errors(y_true: np.ndarray, scores: np.ndarray, positive_label: int, count: int = PER_KIND) -> dict[str, list[int]]:
    """Indices of the most confident false positives (other-class images scored >= 0.5, highest
    first) and false negatives (positive-class images scored < 0.5, lowest first), where
    `scores` are P(positive class)."""
    is_positive = np.asarray(y_true) == positive_label
    false_positive = np.flatnonzero(~is_positive & (scores >= 0.5))
    false_negative = np.flatnonzero(is_positive & (scores < 0.5))
    return {
        "false positives": false_positive[np.argsort(-scores[false_positive])][:count].tolist(),
        "false negatives": false_negative[np.argsort(scores[false_negative])][:count].tolist(),
    }


def kind_headings(positive: str, negative: str) -> dict[str, str]:
    """What each kind of `confident_errors` is, in class names."""
    return {
        "false positives": f"false positives (positive class {positive}): {negative} images called {positive}",
        "false negatives": f"false negatives (positive class {positive}): {positive} images called {negative}",
    }


def cam_layer(model: keras.Model, min_size: int = MIN_CAM_SIZE) -> str | None:
    """The deepest block output of the backbone whose feature map is at least `min_size` on each
    side for the model's input size, or None when none is."""
    blocks = [layer for layer in model.get_layer(BACKBONE).layers if BLOCK_OUTPUT.fullmatch(layer.name)]
    wide = [layer.name for layer in blocks if all(side is not None and side >= min_size for side in layer.output.shape[1:3])]
    return wide[-1] if wide else None


def explain(model: keras.Model, batches: dict[str, np.ndarray], min_size: int = MIN_CAM_SIZE) -> Explanation:
    """Grad-CAM heatmaps for each batch of images, or none and the reason why."""
    layer = cam_layer(model, min_size)
    if layer is None:
        height, width = model.input_shape[1:3]
        return Explanation(None, f"no heatmaps: no backbone block output is at least {min_size}×{min_size} for {height}×{width} input")
    height, width = model.get_layer(BACKBONE).get_layer(layer).output.shape[1:3]
    heatmaps = {kind: grad_cam(model, batch, layer) if len(batch) else batch for kind, batch in batches.items()}
    return Explanation(heatmaps, f"heatmap: Grad-CAM at {layer} ({height}×{width}) towards the model's verdict")


def grad_cam(model: keras.Model, images: np.ndarray, layer: str) -> np.ndarray:
    """One heatmap in [0, 1] per image at `layer`'s resolution, for the model's confidence in its
    own verdict: P(positive) for an image it calls positive, 1 − P(positive) for the others."""
    backbone = model.get_layer(BACKBONE)
    lower, upper = _split(backbone, layer)
    position = model.layers.index(backbone)
    pixels = keras.ops.convert_to_tensor(np.asarray(images, dtype="float32"))
    features = np.asarray(keras.ops.convert_to_numpy(lower(_replay(model.layers[1:position], pixels), training=False)), dtype="float32")

    def verdict_confidence(maps):
        score = _replay(model.layers[position + 1 :], upper(maps, training=False))
        return keras.ops.where(score >= 0.5, score, 1.0 - score)

    gradients = input_gradient(verdict_confidence, features)
    weights = gradients.mean(axis=(1, 2), keepdims=True)
    heatmaps = np.maximum((weights * features).sum(axis=-1), 0.0)
    peaks = heatmaps.max(axis=(1, 2), keepdims=True)
    return np.divide(heatmaps, peaks, out=np.zeros_like(heatmaps), where=peaks > 0)


def _split(backbone: keras.Model, layer: str) -> tuple[keras.Model, keras.layers.Layer]:
    """The backbone as two parts that meet at `layer`'s output. Keras refuses the nested
    backbone's tensors as inputs of a model built on the outer one, but splits the backbone itself
    at any of its own tensors."""
    cut = backbone.get_layer(layer).output
    lower = keras.Model(backbone.inputs, cut)
    # A Functional whose input is its output is refused; at 224 px the cut is the backbone's last map.
    return lower, keras.layers.Identity() if cut is backbone.output else keras.Model(cut, backbone.output)


def _replay(layers: list[keras.layers.Layer], x):
    for layer in layers:
        x = layer(x, training=False)
    return x


def plot(
    images: dict[str, np.ndarray],
    scores: dict[str, np.ndarray],
    headings: dict[str, str],
    explanation: Explanation,
    score_name: str,
    path: Path,
) -> Path:
    """Per kind of error, a heading over its images and, when there are heatmaps, the same images under them."""
    rows = 1 if explanation.heatmaps is None else 2
    columns = max([len(batch) for batch in images.values()] + [1])
    heights = [2.0 * rows if len(batch) else 0.3 for batch in images.values()]  # an empty kind keeps only its heading
    figure = plt.figure(figsize=(max(1.7 * columns, 6.0), sum(heights) + 0.6), layout="constrained")
    # The title gets a row of its own: constrained layout lets a figure's suptitle overlap its subfigures.
    title, *panels = figure.subfigures(len(images) + 1, 1, height_ratios=[0.6, *heights])
    title.suptitle(f"most confident errors at threshold 0.5\n{explanation.note}", fontsize=9)
    for panel, kind in zip(panels, images):
        panel.suptitle(headings[kind] if len(images[kind]) else f"no {headings[kind]}", fontsize=8)
        heatmaps = None if explanation.heatmaps is None else explanation.heatmaps[kind]
        _draw_kind(panel.subplots(rows, columns, squeeze=False), images[kind], scores[kind], heatmaps, score_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _draw_kind(axes: np.ndarray, images: np.ndarray, scores: np.ndarray, heatmaps: np.ndarray | None, score_name: str) -> None:
    for axis in axes.ravel():
        axis.axis("off")
    for column, (image, score) in enumerate(zip(images, scores)):
        axes[0, column].imshow(image.astype(np.uint8))
        axes[0, column].set_title(f"{score_name} {score:.2f}", fontsize=7)
        if heatmaps is not None and heatmaps[column].max() > 0:
            _overlay(axes[1, column], image, heatmaps[column])
        elif heatmaps is not None:  # Grad-CAM keeps only what raised the verdict; an all-zero map would read as evidence
            axes[1, column].imshow(image.astype(np.uint8))
            axes[1, column].set_title("Grad-CAM: no region raised this verdict", fontsize=6)


def _overlay(axis, image: np.ndarray, heatmap: np.ndarray) -> None:
    axis.imshow(image.astype(np.uint8))
    upsampled = np.asarray(Image.fromarray(heatmap.astype(np.float32)).resize(image.shape[1::-1], Image.Resampling.BILINEAR))
    axis.imshow(upsampled, cmap="jet", alpha=0.45, vmin=0, vmax=1)
