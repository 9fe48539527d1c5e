"""Held-out test sets (data.test_sets): how the model does on images from sources it never saw.

The field's protocol (CNNDetection, GenImage, NPR): train on some generators, report per
generator on others. Each set gets its AUC with a standard error (Hanley & McNeil 1982: with 78–200
images per class it is 0.02–0.04, so a difference smaller than that is noise), and, at the
threshold tuned on validation, the accuracy and the share of AI-generated images caught: what a
deployment that never saw that generator would do. `generalisation/mean_auc` is their mean.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from components.config import GENERALISATION_METRIC, HELD_OUT_PREFIX, HELD_OUT_SPLIT
from components.contracts import Manifest
from components.evaluation.metrics import classification_metrics, ranking_metrics
from components.evaluation.plots import held_out_auc

TABLE_NAME = "generalisation.csv"


def held_out_splits(manifest: Manifest) -> list[str]:
    return sorted(split for split in manifest.splits if split.startswith(HELD_OUT_SPLIT))


def table(manifest: Manifest, predictions: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float) -> pd.DataFrame:
    """One row per held-out set from its (labels, P(positive)) and the tuned cut on P(positive)."""
    rows = []
    generated_label = manifest.labels[manifest.generated_class]
    for split, (labels, scores) in predictions.items():
        at_tuned = classification_metrics(labels, scores, threshold)
        # The positive class is label 1: if it is the generated one, recall counts fakes caught, else specificity does.
        caught = at_tuned["recall"] if generated_label == 1 else at_tuned["specificity"]
        auc = ranking_metrics(labels, scores)["auc"]
        fakes = int((labels == generated_label).sum())
        rows.append(
            {
                "set": split.removeprefix(HELD_OUT_SPLIT),
                "images": len(labels),
                "generated": fakes,
                "auc": auc,
                "auc_se": auc_standard_error(auc, fakes, len(labels) - fakes),
                "accuracy": at_tuned["accuracy"],
                "fakes_caught": caught,
            }
        )
    return pd.DataFrame(rows, columns=["set", "images", "generated", "auc", "auc_se", "accuracy", "fakes_caught"])


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982), eq. 2: the AUC's standard error from its value and the class sizes."""
    if math.isnan(auc) or not positives or not negatives:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (positives * negatives)
    return float(math.sqrt(max(variance, 0.0)))


def flat_metrics(sets: pd.DataFrame) -> dict[str, float]:
    """`generalisation/<set>/{auc,accuracy,fakes_caught}` and their mean AUC; none without sets."""
    if sets.empty:
        return {}
    names = ("auc", "accuracy", "fakes_caught")
    flat = {f"{HELD_OUT_PREFIX}{row.set}/{name}": float(getattr(row, name)) for row in sets.itertuples() for name in names}
    flat[GENERALISATION_METRIC] = float(sets["auc"].mean())
    return flat


def write(sets: pd.DataFrame, test_auc: float, out_dir: Path) -> tuple[list[Path], list[Path]]:
    """([the per-set table as CSV], [its picture]) for the run's artifacts; both empty without sets."""
    if sets.empty:
        return [], []
    path = out_dir / TABLE_NAME
    sets.to_csv(path, index=False)
    return [path], [held_out_auc(sets, test_auc, out_dir / "generalisation.png")]
