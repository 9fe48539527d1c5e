"""The promotion gate selects on validation, beyond noise: a paired bootstrap of the AUC
difference on the same validation images, against a real MLflow sqlite store whose runs carry
the per-image scores evaluation logs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from components.config import DEFAULT_GATE, GateConfig, TrackingConfig
from components.registry import catalog, gate
from components.registry.register import CHAMPION, run
from tests.code.test_registry import _config as registered_config

NAME = "gated-detector"
IMAGES = 400  # per class: the size of a demo validation split


def _labels() -> np.ndarray:
    return np.repeat([1, 0], IMAGES)


def _scores(separation: float, seed: int) -> np.ndarray:
    """P(AI-generated) from a model whose AI-generated images score `separation` higher on average."""
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(rng.normal(size=2 * IMAGES) + separation * _labels())))


def _register(p_ai: np.ndarray, tmp_path, rule: GateConfig = DEFAULT_GATE, **changes) -> object:
    """A real run with a tiny model and its validation scores logged as evaluation does, registered."""
    frame = pd.DataFrame({"source": [f"val/{i}.png" for i in range(len(p_ai))], "generated": _labels(), "p_ai_generated": p_ai})
    path = tmp_path / gate.VALIDATION_SCORES.split("/")[-1]
    frame.to_csv(path, index=False)
    cfg = registered_config(round(float(roc_auc_score(_labels(), p_ai)), 4), registered_model=NAME, gate=rule, **changes)
    MlflowClient().log_artifact(cfg.run_id, str(path), "evaluation")
    return run(cfg)


def _champion() -> str:
    return str(MlflowClient().get_registered_model(NAME).aliases[CHAMPION])


# Two models of equal skill: the second scores higher on these images by chance (AUC +0.013).
EQUAL, LUCKY = _scores(1.5, seed=1), _scores(1.5, seed=7)


def test_a_tie_within_noise_keeps_the_champion(tracking_store, tmp_path):
    assert roc_auc_score(_labels(), LUCKY) > roc_auc_score(_labels(), EQUAL) + 0.01
    _register(EQUAL, tmp_path)
    challenger = _register(LUCKY, tmp_path)
    assert not challenger.promoted and _champion() == "1"
    assert "within noise, the champion stays" in challenger.decision


def test_a_clear_win_promotes(tracking_store, tmp_path):
    _register(_scores(1.0, seed=1), tmp_path)
    better = _register(_scores(2.5, seed=3), tmp_path)
    assert better.promoted and _champion() == "2" and "better beyond noise" in better.decision
    worse = _register(_scores(1.0, seed=5), tmp_path)
    assert not worse.promoted and "worse beyond noise, the champion stays" in worse.decision


def test_the_description_reports_difference_interval_and_decision(tracking_store, tmp_path):
    _register(_scores(1.0, seed=1), tmp_path)
    better = _register(_scores(2.5, seed=3), tmp_path)
    described = MlflowClient().get_model_version(NAME, better.version).description
    assert "val/auc_final" in described and "95% interval [+0." in described and "paired bootstrap, 2000 resamples" in described
    assert f"over {2 * IMAGES} paired validation images" in described and "**Promoted**" in described


def test_the_interval_is_reproducible_for_a_seed():
    labels, champion, candidate = _labels(), _scores(1.5, seed=1), _scores(1.6, seed=4)
    first = gate.paired_bootstrap(labels, champion, candidate, GateConfig(seed=7))
    assert first == gate.paired_bootstrap(labels, champion, candidate, GateConfig(seed=7))
    assert first != gate.paired_bootstrap(labels, champion, candidate, GateConfig(seed=8))
    assert first.low < first.observed < first.high
    observed = roc_auc_score(labels, candidate) - roc_auc_score(labels, champion)
    assert first.observed == pytest.approx(observed)


def test_bootstrap_auc_matches_scikit_learn_with_ties():
    scores = np.array([[0.9, 0.4, 0.4, 0.4, 0.1, 0.8]])
    assert gate._auc(scores, positives=3)[0] == pytest.approx(roc_auc_score([1, 1, 1, 0, 0, 0], scores[0]))


def test_a_wider_interval_at_higher_confidence():
    labels, champion, candidate = _labels(), _scores(1.5, seed=1), _scores(1.6, seed=4)
    narrow = gate.paired_bootstrap(labels, champion, candidate, GateConfig(confidence=0.8))
    wide = gate.paired_bootstrap(labels, champion, candidate, GateConfig(confidence=0.99))
    assert wide.low < narrow.low and wide.high > narrow.high


def test_the_old_rule_stays_reachable_and_promotes_a_tie(tracking_store, tmp_path):
    old = GateConfig(rule="point_estimate")
    _register(EQUAL, tmp_path, old, primary_metric="test/auc")
    lucky = _register(LUCKY, tmp_path, old, primary_metric="test/auc")
    assert lucky.promoted and "test/auc" in lucky.decision and "beats it" in lucky.decision


def test_bootstrapping_test_figures_is_refused_naming_the_fix():
    with pytest.raises(ValidationError, match=r"gate.rule='point_estimate'.*primary_metric='test/auc'"):
        TrackingConfig(primary_metric="test/auc")
    assert TrackingConfig(primary_metric="test/auc", gate=GateConfig(rule="point_estimate")).primary_metric == "test/auc"


def test_a_displaced_champion_says_superseded_and_keeps_its_history(tracking_store, tmp_path):
    _register(_scores(1.0, seed=1), tmp_path)
    _register(_scores(2.5, seed=3), tmp_path)
    first = MlflowClient().get_model_version(NAME, "1")
    assert first.tags["decision"] == "superseded by v2" and first.tags["superseded_by"].startswith("v2 on 20")
    assert first.description.count("no champion yet") == 1 and "**Superseded by v2**" in first.description
    history = json.loads(first.tags["decisions"])
    assert [entry["decision"] for entry in history] == ["promoted", "superseded by v2"]
    assert catalog.rollback(NAME) == "1"
    restored = MlflowClient().get_model_version(NAME, "1")
    assert restored.tags["decision"] == "restored" and "superseded_by" not in restored.tags
    assert MlflowClient().get_model_version(NAME, "2").tags["decision"] == "rolled back"


def test_a_hand_promotion_uses_the_gate_the_version_was_registered_under(tracking_store, tmp_path):
    _register(EQUAL, tmp_path)
    tie = _register(LUCKY, tmp_path)
    with pytest.raises(catalog.PromotionRefused, match="within noise"):
        catalog.promote(NAME, tie.version)
    assert _champion() == "1"


def test_a_gate_on_the_generalisation_mean_promotes_on_unseen_generators_not_on_validation(tracking_store):
    """With primary_metric=generalisation/mean_auc, a challenger worse on validation (the training
    generators) but better on the held-out sets takes @champion, and the description lists each set."""
    point = GateConfig(rule="point_estimate")

    def held_out(glid3: float, dalle: float, validation: float) -> dict[str, float]:
        sets = {"generalisation/glid3/auc": glid3, "generalisation/dalle-2/auc": dalle}
        return {"val/auc_final": validation, "test/auc": validation, **sets, "generalisation/mean_auc": (glid3 + dalle) / 2}

    first = run(
        registered_config(
            0.9, registered_model=NAME, gate=point, primary_metric="generalisation/mean_auc", metrics=held_out(0.6, 0.6, 0.95)
        )
    )
    second = run(
        registered_config(0.9, registered_model=NAME, gate=point, primary_metric="generalisation/mean_auc", metrics=held_out(0.8, 0.7, 0.9))
    )
    assert first.promoted and second.promoted and _champion() == "2"
    assert "generalisation/mean_auc 0.7500 against champion v1 at 0.6000" in second.decision
    described = MlflowClient().get_model_version(NAME, second.version).description
    assert "| generalisation/glid3/auc | 0.8000 |" in described and "| generalisation/mean_auc | 0.7500 |" in described
    with pytest.raises(ValidationError, match=r"gate.rule='point_estimate'"):
        TrackingConfig(primary_metric="generalisation/mean_auc")
