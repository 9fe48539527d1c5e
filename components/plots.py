"""PNG pictures for MLflow: learning curves, confusion matrix, ROC and precision-recall."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training hosts and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

CURVE_METRICS = ("loss", "accuracy", "auc", "learning_rate")


def learning_curves(history: list[dict[str, float]], path: Path, title: str) -> Path:
    figure, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(4 * len(CURVE_METRICS), 3.2))
    epochs = [row["epoch"] + 1 for row in history]
    for axis, name in zip(axes, CURVE_METRICS):
        for prefix, style in (("", "-o"), ("val_", "--o")):
            values = [row.get(prefix + name) for row in history]
            if any(value is not None for value in values):
                axis.plot(epochs, values, style, markersize=3, label=f"{'val' if prefix else 'train'}")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.legend()
    figure.suptitle(title)
    return _save(figure, path)


def confusion(matrix: list[list[int]], class_names: list[str], path: Path, title: str) -> Path:
    figure, axis = plt.subplots(figsize=(4, 3.6))
    axis.imshow(np.asarray(matrix), cmap="Blues")
    for row in range(2):
        for column in range(2):
            axis.text(column, row, str(matrix[row][column]), ha="center", va="center")
    axis.set_xticks([0, 1], class_names)
    axis.set_yticks([0, 1], class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    return _save(figure, path)


def roc(y_true: np.ndarray, scores: np.ndarray, threshold: float, path: Path, title: str) -> Path:
    fpr, tpr, thresholds = roc_curve(y_true, scores)
    figure, axis = plt.subplots(figsize=(4, 3.6))
    axis.plot(fpr, tpr)
    axis.plot([0, 1], [0, 1], ":", color="grey")
    chosen = int(np.argmin(np.abs(thresholds - threshold)))
    axis.plot(fpr[chosen], tpr[chosen], "o", label=f"threshold {threshold:.3f}")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.legend()
    axis.set_title(title)
    return _save(figure, path)


def precision_recall(y_true: np.ndarray, scores: np.ndarray, path: Path, title: str) -> Path:
    precision, recall, _ = precision_recall_curve(y_true, scores)
    figure, axis = plt.subplots(figsize=(4, 3.6))
    axis.plot(recall, precision)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_title(title)
    return _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
