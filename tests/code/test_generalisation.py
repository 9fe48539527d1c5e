"""Held-out test set figures (components/evaluation/generalisation.py) on arrays with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import rankdata

from components.contracts import Manifest
from components.evaluation import generalisation


def _manifest(generated: str = "FAKE") -> Manifest:
    return Manifest.model_validate(
        {
            "shard_key": "k",
            "dataset_fingerprint": "f",
            "created": "now",
            "source": {"root": "r", "validation_report": "r.csv"},
            "class_names": ["FAKE", "REAL"],
            "labels": {"FAKE": 0, "REAL": 1},
            "positive_class": "REAL",
            "generated_class": generated,
            "image_size": 32,
            "encoding": {"codec": "png"},
            "split": {"seed": 1, "val_fraction": 0.2},
            "augmentation": {"policy": {}, "applied": "live"},
            "splits": {},
        }
    )


def test_per_set_figures_count_fakes_caught_on_the_generated_class_at_the_tuned_cut():
    # Labels: FAKE=0 (generated), REAL=1 (positive); scores are P(REAL); the cut is on P(REAL).
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.45, 0.7, 0.4, 0.6, 0.8, 0.9])
    sets = generalisation.table(_manifest(), {"heldout-glid3": (labels, scores), "heldout-dalle": (labels, 1 - scores)}, 0.5)
    glid3, dalle = sets.set_index("set").loc["glid3"], sets.set_index("set").loc["dalle"]
    assert glid3["auc"] == pytest.approx(13 / 16) and dalle["auc"] == pytest.approx(3 / 16)
    assert glid3["fakes_caught"] == 0.75 and glid3["accuracy"] == 0.75  # 0.7 is called REAL; 0.4 is called FAKE
    assert (glid3["images"], glid3["generated"]) == (8, 4)
    flat = generalisation.flat_metrics(sets)
    assert flat["generalisation/glid3/fakes_caught"] == 0.75
    assert flat["generalisation/mean_auc"] == pytest.approx(0.5)
    assert generalisation.flat_metrics(sets.iloc[:0]) == {}


def test_fakes_caught_follows_the_generated_class_when_it_is_the_positive_one():
    labels = np.array([0, 0, 1, 1])  # now REAL (label 1) is the generated class
    scores = np.array([0.2, 0.6, 0.7, 0.9])
    sets = generalisation.table(_manifest(generated="REAL"), {"heldout-x": (labels, scores)}, 0.5)
    assert sets.loc[0, "fakes_caught"] == 1.0 and sets.loc[0, "accuracy"] == 0.75


def test_auc_standard_error_matches_the_spread_of_auc_over_repeated_samples():
    """Hanley & McNeil's formula against the AUC's observed spread over 2,000 samples of 100 per
    class from two score distributions (true AUC about 0.76)."""
    rng = np.random.default_rng(0)
    positives, negatives = rng.normal(1.0, 1.0, (2000, 100)), rng.normal(0.0, 1.0, (2000, 100))
    ranks = rankdata(np.concatenate([positives, negatives], axis=1), axis=1)[:, :100]
    aucs = (ranks.sum(axis=1) - 100 * 101 / 2) / (100 * 100)
    formula = generalisation.auc_standard_error(float(aucs.mean()), 100, 100)
    assert formula == pytest.approx(aucs.std(), rel=0.1)
    assert 0.02 < formula < 0.04, "the issue's figure for 78-200 images per class"
    assert math.isnan(generalisation.auc_standard_error(float("nan"), 10, 10))
