"""The error gallery: the test images the model got most confidently wrong, each with a Grad-CAM
heatmap of what drove the verdict (Selvaraju et al. 2017, the keras.io recipe).

The recipe takes the last convolutional feature map and the gradient of the score with respect
to it; here that map is the backbone's output, and the head's layers are replayed on it so the
nested backbone needs no graph surgery.
"""

from __future__ import annotations

from pathlib import Path

import keras
import matplotlib
import numpy as np
from PIL import Image

from components.training.accelerator import input_gradient

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  after the backend is chosen

PER_KIND = 6


def confident_errors(y_true: np.ndarray, p_generated: np.ndarray, generated_label: int, count: int = PER_KIND) -> dict[str, list[int]]:
    """Indices of the most confident false positives (real images called AI-generated, highest
    P(AI) first) and false negatives (AI-generated images called real, lowest P(AI) first)."""
    is_generated = np.asarray(y_true) == generated_label
    false_positive = np.flatnonzero(~is_generated & (p_generated >= 0.5))
    false_negative = np.flatnonzero(is_generated & (p_generated < 0.5))
    return {
        "false positives": false_positive[np.argsort(-p_generated[false_positive])][:count].tolist(),
        "false negatives": false_negative[np.argsort(p_generated[false_negative])][:count].tolist(),
    }


def grad_cam(model: keras.Model, images: np.ndarray, towards_positive: bool) -> np.ndarray:
    """One heatmap in [0, 1] per image, at the backbone's output resolution, for the score of the
    positive class (or of its complement when `towards_positive` is False)."""
    names = [layer.name for layer in model.layers]
    backbone_at = names.index("resnet50")
    x = keras.ops.convert_to_tensor(np.asarray(images, dtype="float32"))
    for layer in model.layers[1 : backbone_at + 1]:
        x = layer(x, training=False)
    features = np.asarray(keras.ops.convert_to_numpy(x))

    def head(maps):
        score = maps
        for layer in model.layers[backbone_at + 1 :]:
            score = layer(score, training=False)
        return score if towards_positive else 1.0 - score

    gradients = input_gradient(head, features)
    weights = gradients.mean(axis=(1, 2), keepdims=True)
    heatmaps = np.maximum((weights * features).sum(axis=-1), 0.0)
    peaks = heatmaps.max(axis=(1, 2), keepdims=True)
    return np.divide(heatmaps, peaks, out=np.zeros_like(heatmaps), where=peaks > 0)


def plot(
    images: dict[str, np.ndarray], heatmaps: dict[str, np.ndarray], p_generated: dict[str, np.ndarray], path: Path, title: str
) -> Path:
    """Two rows per kind of error: the images, then the same images under their heatmaps."""
    columns = max([len(batch) for batch in images.values()] + [1])
    figure, axes = plt.subplots(2 * len(images), columns, figsize=(1.7 * columns, 3.6 * len(images)), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for row, kind in enumerate(images):
        for column, (image, heatmap, p) in enumerate(zip(images[kind], heatmaps[kind], p_generated[kind])):
            axes[2 * row, column].imshow(image.astype(np.uint8))
            axes[2 * row, column].set_title(f"{kind[:-1]}\nP(AI) {p:.2f}", fontsize=7)
            axes[2 * row + 1, column].imshow(image.astype(np.uint8))
            upsampled = np.asarray(Image.fromarray(heatmap.astype(np.float32)).resize(image.shape[1::-1], Image.Resampling.BILINEAR))
            axes[2 * row + 1, column].imshow(upsampled, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        if not len(images[kind]):
            axes[2 * row, 0].set_title(f"no {kind}", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
