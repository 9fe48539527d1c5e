"""The promotion gate: does a new version beat @champion by more than noise, on validation data?

Test figures are a report, never a criterion: a version chosen for its test AUC makes that test
AUC optimistically biased. So the gate compares the validation split (`val/auc_final` by default),
and a challenger wins only when its advantage is beyond what resampling the same images gives:
a paired, class-stratified bootstrap of the AUC difference over the validation images that both
versions scored (evaluation logs each run's per-image scores as VALIDATION_SCORES). It promotes
when the lower end of the two-sided interval is above zero. With `rule=point_estimate` any higher
value wins, as the gate did before; with `primary_metric=test/auc` that is selection on test.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from scipy.stats import rankdata

from components.config import BOOTSTRAPPED_METRICS, DEFAULT_GATE, GateConfig
from components.registry.tags import ROLLED_BACK_TAG, version_metrics

# One row per validation image: source (its path under the data root), generated (1 for the
# AI-generated class), p_ai_generated.
VALIDATION_SCORES = "evaluation/val_scores.csv"

ScoreLoader = Callable[[str], "pd.DataFrame | None"]


@dataclass(frozen=True)
class Difference:
    """Candidate minus champion: the observed difference and its bootstrap interval."""

    observed: float
    low: float
    high: float
    images: int


def validation_scores(run_id: str) -> pd.DataFrame | None:
    """A run's per-image validation scores, or None for a run evaluated before they were logged."""
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{VALIDATION_SCORES}")
    except (MlflowException, OSError):
        return None
    return pd.read_csv(io.StringIO(text), keep_default_na=False)


def should_promote(
    candidate: ModelVersion,
    champion: ModelVersion | None,
    metric: str,
    rule: GateConfig = DEFAULT_GATE,
    scores: ScoreLoader = validation_scores,
) -> tuple[bool, str]:
    """The gate as a decision on two registered versions: (promote?, why) for the record."""
    value = version_metrics(candidate).get(metric, math.nan)
    if math.isnan(value):
        return False, f"v{candidate.version} has no {metric}"
    if champion is not None and str(champion.version) == str(candidate.version):
        return True, f"v{candidate.version} is the champion"
    if ROLLED_BACK_TAG in candidate.tags:
        return False, f"v{candidate.version} was rolled back ({candidate.tags[ROLLED_BACK_TAG]}); only a forced promotion brings it back"
    if champion is None:
        return True, "no champion yet"
    champion_data, candidate_data = champion.tags.get("dataset_fingerprint"), candidate.tags.get("dataset_fingerprint")
    if champion_data != candidate_data:
        return False, f"champion v{champion.version} was measured on dataset {champion_data}, not {candidate_data}"
    champion_value = version_metrics(champion).get(metric, math.nan)
    if math.isnan(champion_value):
        return True, f"champion v{champion.version} has no {metric}"
    versus = f"{metric} {value:.4f} against champion v{champion.version} at {champion_value:.4f}"
    if rule.rule == "paired_bootstrap" and metric in BOOTSTRAPPED_METRICS:
        paired = _paired(scores(champion.run_id), scores(candidate.run_id))
        if paired is not None:
            difference = paired_bootstrap(*paired, rule)
            return difference.low > 0, f"{versus}: {_interval(difference, rule)}"
        versus += " (no per-image validation scores to pair for both, so compared by point estimate)"
    if value > champion_value:
        return True, f"{versus}: beats it"
    return False, f"{versus}: does not beat it"


def paired_bootstrap(generated: np.ndarray, champion: np.ndarray, candidate: np.ndarray, rule: GateConfig) -> Difference:
    """AUC(candidate) − AUC(champion) on the same images, with its percentile interval over
    `rule.resamples` resamples drawn within each class (so every resample has both)."""
    generated = np.asarray(generated).astype(bool)
    rng = np.random.default_rng(rule.seed)
    positives, negatives = np.flatnonzero(generated), np.flatnonzero(~generated)
    picks = np.concatenate(
        [rng.choice(positives, (rule.resamples, len(positives))), rng.choice(negatives, (rule.resamples, len(negatives)))], axis=1
    )
    differences = _auc(candidate[picks], len(positives)) - _auc(champion[picks], len(positives))
    tail = (1.0 - rule.confidence) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    everyone = np.r_[positives, negatives][None, :]
    observed = _auc(candidate[everyone], len(positives))[0] - _auc(champion[everyone], len(positives))[0]
    return Difference(float(observed), float(low), float(high), len(generated))


def _auc(scores: np.ndarray, positives: int) -> np.ndarray:
    """Row-wise ROC AUC (Mann-Whitney, ties counted half) where each row's first `positives`
    columns are the positive class."""
    ranks = rankdata(scores, axis=1)
    negatives = scores.shape[1] - positives
    return (ranks[:, :positives].sum(axis=1) - positives * (positives + 1) / 2) / (positives * negatives)


def _paired(champion: pd.DataFrame | None, candidate: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(generated, champion's P(AI), candidate's P(AI)) over the images both scored, or None
    when there are none of one class."""
    if champion is None or candidate is None or not (champion["source"].is_unique and candidate["source"].is_unique):
        return None  # shards made before records carried their source have '' for every image
    both = champion.merge(candidate, on=["source", "generated"], suffixes=("_champion", "_candidate"))
    if both["generated"].nunique() < 2:
        return None
    return both["generated"].to_numpy(), both["p_ai_generated_champion"].to_numpy(), both["p_ai_generated_candidate"].to_numpy()


def _interval(difference: Difference, rule: GateConfig) -> str:
    if difference.low > 0:
        verdict = "better beyond noise"
    elif difference.high < 0:
        verdict = "worse beyond noise, the champion stays"
    else:
        verdict = "within noise, the champion stays"
    return (
        f"difference {difference.observed:+.4f}, {rule.confidence:.0%} interval [{difference.low:+.4f}, {difference.high:+.4f}] "
        f"over {difference.images} paired validation images ({rule.describe()}): {verdict}"
    )
