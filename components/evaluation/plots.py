"""PNG pictures for MLflow of a model's test scores: confusion matrix, ROC and precision-recall
(the learning curves are training's: components/training/curves.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training hosts and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve  # noqa: E402

from components.evaluation.metrics import classification_metrics  # noqa: E402
from components.training.curves import save_png  # noqa: E402


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
    return save_png(figure, path)


def roc(y_true: np.ndarray, scores: np.ndarray, threshold: float, positive: str, path: Path, title: str) -> Path:
    """The curve with its AUC, and both operating points: the report's 0.5 and the tuned threshold.
    `scores` are P(positive), the class labelled 1."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    figure, axis = plt.subplots(figsize=(4, 3.6))
    axis.plot(fpr, tpr, label=f"AUC {auc(fpr, tpr):.3f}")
    axis.plot([0, 1], [0, 1], ":", color="grey")
    for name, marker, point in _operating_points(y_true, scores, threshold):
        axis.plot(1 - point["specificity"], point["recall"], marker, label=name)
    axis.set_xlabel(f"false positive rate (positive: {positive})")
    axis.set_ylabel(f"true positive rate (positive: {positive})")
    axis.legend(loc="lower right")
    axis.set_title(title)
    return save_png(figure, path)


def precision_recall(y_true: np.ndarray, scores: np.ndarray, threshold: float, positive: str, path: Path, title: str) -> Path:
    """The curve with its average precision (the PR AUC the metrics report) and both operating points,
    for the positive class: `scores` are P(positive), the class labelled 1."""
    precision, recall, _ = precision_recall_curve(y_true, scores)
    figure, axis = plt.subplots(figsize=(4, 3.6))
    axis.plot(recall, precision, label=f"PR AUC {average_precision_score(y_true, scores):.3f}")
    for name, marker, point in _operating_points(y_true, scores, threshold):
        axis.plot(point["recall"], point["precision"], marker, label=name)
    axis.set_xlabel(f"recall of {positive}")
    axis.set_ylabel(f"precision of {positive}")
    axis.legend(loc="lower left")
    axis.set_title(title)
    return save_png(figure, path)


def _operating_points(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> list[tuple[str, str, dict]]:
    """The report's 0.5 and the tuned cut, measured as the metrics measure them (so the dots match test/*)."""
    cuts = ((0.5, "s", "threshold 0.5"), (threshold, "o", f"threshold {threshold:.3f} (tuned on val)"))
    return [(name, marker, classification_metrics(y_true, scores, cut)) for cut, marker, name in cuts]


def held_out_auc(sets, test_auc: float, path: Path) -> Path:
    """AUC per held-out test set with ±1 standard error, against the test split's AUC and chance."""
    figure, axis = plt.subplots(figsize=(max(4.0, 0.8 * len(sets) + 2), 3.6))
    axis.bar(sets["set"], sets["auc"], yerr=sets["auc_se"], capsize=3, color="tab:blue")
    axis.axhline(test_auc, color="tab:green", linestyle="--", label=f"test split {test_auc:.3f}")
    axis.axhline(0.5, color="grey", linestyle=":", label="chance")
    axis.set_ylim(0, 1)
    axis.set_ylabel("AUC (±1 s.e.)")
    axis.tick_params(axis="x", labelrotation=30)
    axis.legend(loc="lower right")
    axis.set_title(f"held-out test sets: mean AUC {sets['auc'].mean():.3f}")
    return save_png(figure, path)
