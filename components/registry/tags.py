"""What a registered version carries in its tags, and how to read it back, versions registered
under earlier schemes included. MLflow-free: the gate, registration and the catalog share it."""

from __future__ import annotations

import json
from collections.abc import Mapping

from components.contracts.manifest import p_generated

HISTORY_TAG = "champion_history"  # on the registered model: JSON list of versions, oldest first; its last entry holds @champion
METRICS_TAG = "metrics"  # JSON {name: value}: every evaluation metric in one tag
DECISION_TAG = "decision"  # the latest: promoted | not promoted | forced | rolled back | restored | superseded by vN
DECISIONS_TAG = "decisions"  # JSON [{when, decision, reason}], oldest first: the description shows it
ROLLED_BACK_TAG = "rolled_back"
SUPERSEDED_TAG = "superseded_by"  # "vN on <date>": the version that took @champion from this one
GATE_TAG = "gate"  # JSON GateConfig the version was registered under; a hand promotion uses it too
THRESHOLD_AI_TAG = "threshold_p_ai"  # the verdict is AI-generated when P(AI-generated) > this
LEGACY_THRESHOLD_TAG = "threshold"  # versions registered before the tags named their scale: on P(positive class)
LEGACY_METRIC_PREFIX = "metric."  # versions registered before METRICS_TAG carry one tag per metric


def threshold_tags(threshold: float, positive_class: str, generated_class: str) -> dict[str, str]:
    """The tuned threshold on both scales, each named for it: P(AI-generated), which users read,
    and P(<positive class>), the scale evaluation tuned it on and the report's figures use."""
    on_generated = p_generated(threshold, positive_class, generated_class)
    return {THRESHOLD_AI_TAG: f"{on_generated:.6f}", f"threshold_p_{positive_class.lower()}": f"{threshold:.6f}"}


def positive_class_tagged(tags: Mapping[str, str]) -> str | None:
    """The positive class a `threshold_p_<class>` tag names (the one that is not P(AI)), or None."""
    named = [key for key in tags if key.startswith("threshold_p_") and key != THRESHOLD_AI_TAG]
    return named[0].removeprefix("threshold_p_").upper() if named else None


def positive_threshold(tags: Mapping[str, str]) -> float | None:
    """The tuned threshold on P(positive class), the scale the model outputs: the `threshold_p_*`
    tag that is not P(AI), or the unnamed tag of older versions; None when neither is there."""
    positive = positive_class_tagged(tags)
    if positive:
        return float(tags[f"threshold_p_{positive.lower()}"])
    return float(tags[LEGACY_THRESHOLD_TAG]) if LEGACY_THRESHOLD_TAG in tags else None


def version_metrics(version) -> dict[str, float]:
    if METRICS_TAG in version.tags:
        return {key: float(value) for key, value in json.loads(version.tags[METRICS_TAG]).items()}
    legacy = {key: value for key, value in version.tags.items() if key.startswith(LEGACY_METRIC_PREFIX)}
    return {_current_name(key.removeprefix(LEGACY_METRIC_PREFIX)): float(value) for key, value in legacy.items()}


def _current_name(legacy_name: str) -> str:
    """Old metric names (test_auc, test_tuned_f1) as the namespaced ones the gate compares (test/auc, test_tuned/f1)."""
    for prefix in ("test_tuned", "test"):
        if legacy_name.startswith(f"{prefix}_"):
            return f"{prefix}/{legacy_name.removeprefix(prefix + '_')}"
    return legacy_name
