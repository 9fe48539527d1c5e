"""The robustness table: test AUC and accuracy when the images are degraded as they are in practice.

GenImage (Zhu et al. 2023) shows detectors that look perfect on clean test images falling to
chance after JPEG re-compression or resizing; these rows tell a user which of their images a
verdict can be trusted on. Every condition runs the same test images through components/data/degrade.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import matplotlib
import numpy as np

from components.contracts import Manifest
from components.data import degrade
from components.data.fit import fit_image
from components.data.reader import installed_reader, make_dataset
from components.evaluation.metrics import ranking_metrics

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  after the backend is chosen

Condition = Callable[[np.ndarray], np.ndarray]
CONDITION_NAMES = ("clean", "jpeg_q90", "jpeg_q75", "jpeg_q50", "downup_0.5", "blur_sigma1", "own_resize")


def conditions(image_size: int, fit: str) -> dict[str, Condition]:
    """Name -> one uint8 image in, the degraded image of the same size out."""
    from PIL import Image

    def own_resize(image: np.ndarray) -> np.ndarray:
        # As if the source had been twice as large: the model's own fit brings it to size.
        large = Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.Resampling.BICUBIC)
        return np.asarray(fit_image(large, image_size, fit))

    return {
        "clean": lambda image: image,
        "jpeg_q90": lambda image: degrade.jpeg(image, 90),
        "jpeg_q75": lambda image: degrade.jpeg(image, 75),
        "jpeg_q50": lambda image: degrade.jpeg(image, 50),
        "downup_0.5": lambda image: degrade.down_up(image, 0.5),
        "blur_sigma1": lambda image: degrade.blur(image, 1.0),
        "own_resize": own_resize,
    }


def robustness_table(
    model: keras.Model, manifest: Manifest, manifest_path: str, threshold: float, batch_size: int = 64
) -> tuple[list[dict], dict[str, float]]:
    """Rows (condition, auc, accuracy) and MLflow metrics `robust/<condition>/{auc,accuracy}`, plus
    `robust/worst_auc`: the lowest AUC over the degraded conditions (every one but clean)."""
    images, labels = _test_images(manifest_path, batch_size)
    rows, metrics = [], {}
    for name, condition in conditions(manifest.image_size, manifest.fit).items():
        degraded = np.stack([condition(image) for image in images])
        scores = np.concatenate(
            [
                model.predict_on_batch(degraded[start : start + batch_size].astype("float32")).ravel()
                for start in range(0, len(degraded), batch_size)
            ]
        )
        auc = ranking_metrics(labels, scores)["auc"]
        accuracy = float(np.mean((scores >= threshold).astype(int) == labels))
        rows.append({"condition": name, "auc": auc, "accuracy": accuracy})
        metrics[f"robust/{name}/auc"], metrics[f"robust/{name}/accuracy"] = auc, accuracy
    # One figure for the comparison table: how far the least forgiving degradation brings AUC down.
    metrics["robust/worst_auc"] = min(row["auc"] for row in rows if row["condition"] != "clean")
    return rows, metrics


def _test_images(manifest_path: str, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    batches = list(make_dataset(manifest_path, "test", batch_size, dtype="uint8", reader=installed_reader()))
    images = np.concatenate([np.asarray(batch) for batch, _ in batches])
    labels = np.concatenate([np.asarray(batch_labels).ravel() for _, batch_labels in batches]).astype(int)
    return images, labels


def plot(rows: list[dict], positive: str, path: Path, title: str) -> Path:
    """AUC and accuracy per condition; accuracy cuts P(positive) at the tuned threshold."""
    names = [row["condition"] for row in rows]
    positions = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.bar(positions - 0.2, [row["auc"] for row in rows], 0.4, label="AUC")
    axis.bar(positions + 0.2, [row["accuracy"] for row in rows], 0.4, label=f"accuracy (P({positive}) ≥ tuned threshold)")
    axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axis.set_xticks(positions, names, rotation=20)
    axis.set_ylim(0, 1)
    axis.set_title(f"{title} (positive: {positive})")
    axis.legend(loc="lower left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
