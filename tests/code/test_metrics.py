from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from components.evaluation.metrics import classification_metrics, ranking_metrics, youden_threshold

RNG = np.random.default_rng(7)
Y_TRUE = RNG.integers(0, 2, 400)
SCORES = np.clip(Y_TRUE * 0.3 + RNG.normal(0.4, 0.2, 400), 0, 1)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.62])
def test_classification_metrics_match_scikit_learn(threshold: float):
    predicted = (SCORES >= threshold).astype(int)
    metrics = classification_metrics(Y_TRUE, SCORES, threshold)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(Y_TRUE, predicted))
    assert metrics["precision"] == pytest.approx(precision_score(Y_TRUE, predicted))
    assert metrics["recall"] == pytest.approx(recall_score(Y_TRUE, predicted))
    assert metrics["f1"] == pytest.approx(f1_score(Y_TRUE, predicted))
    assert metrics["specificity"] == pytest.approx(recall_score(Y_TRUE, predicted, pos_label=0))


def test_confusion_matrix_on_known_arrays():
    metrics = classification_metrics(np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.8, 0.9, 0.4, 0.7]), 0.5)
    assert metrics["confusion_matrix"] == [[1, 1], [1, 2]]
    assert metrics["specificity"] == 0.5 and metrics["recall"] == pytest.approx(2 / 3)


def test_ranking_metrics_match_scikit_learn():
    metrics = ranking_metrics(Y_TRUE, SCORES)
    assert metrics["auc"] == pytest.approx(roc_auc_score(Y_TRUE, SCORES))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(Y_TRUE, SCORES))


def test_ranking_metrics_undefined_for_one_class():
    assert np.isnan(ranking_metrics(np.ones(5), np.linspace(0, 1, 5))["auc"])


def test_youden_threshold_separates_a_separable_set():
    y_true = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.65, 0.7, 0.8, 0.9])
    threshold = youden_threshold(y_true, scores)
    assert 0.65 < threshold <= 0.7
    assert classification_metrics(y_true, scores, threshold)["accuracy"] == 1.0


def test_youden_threshold_maximises_tpr_minus_fpr():
    threshold = youden_threshold(Y_TRUE, SCORES)

    def j(cut: float) -> float:
        metrics = classification_metrics(Y_TRUE, SCORES, cut)
        return metrics["recall"] + metrics["specificity"] - 1

    assert all(j(threshold) >= j(cut) - 1e-12 for cut in np.unique(SCORES))
