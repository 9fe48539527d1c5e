"""Metrics of the origin report, plus the decision threshold it listed as future work.

Pure functions on arrays: scores are the model's probability of the positive class (label 1).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | list]:
    """Threshold-dependent figures, with the confusion matrix as [[tn, fp], [fn, tp]]."""
    y_true = np.asarray(y_true).astype(int).ravel()
    predicted = (np.asarray(scores).ravel() >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel().tolist()
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return {
        "threshold": float(threshold),
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "specificity": _ratio(tn, tn + fp),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def ranking_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Threshold-free figures; undefined (NaN) when only one class is present."""
    y_true = np.asarray(y_true).astype(int).ravel()
    scores = np.asarray(scores).ravel()
    if len(np.unique(y_true)) < 2:
        return {"auc": float("nan"), "pr_auc": float("nan")}
    return {"auc": float(roc_auc_score(y_true, scores)), "pr_auc": float(average_precision_score(y_true, scores))}


def youden_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The ROC point that maximises TPR − FPR; ties go to the higher threshold (fewer positives)."""
    fpr, tpr, thresholds = roc_curve(np.asarray(y_true).astype(int).ravel(), np.asarray(scores).ravel())
    best = int(np.argmax(tpr - fpr))
    # roc_curve's first threshold is +inf ("predict nothing"); it is never a usable cut.
    return float(min(thresholds[best], 1.0))


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0
