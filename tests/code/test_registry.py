"""Promotion logic against a real MLflow sqlite store, with real (tiny) logged Keras models."""

from __future__ import annotations

import json

import keras
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from components.config import GateConfig
from components.registry import catalog
from components.registry.register import CHALLENGER, CHAMPION, HISTORY_TAG, PREVIOUS, RegistryConfig, run

NAME = "detector-under-test"


def _logged_model(variant: str = "improved") -> tuple[str, str]:
    """A real run with a real (tiny) Keras model; returns (run_id, model_uri)."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    with mlflow.start_run(tags={"variant": variant}) as active:
        info = mlflow.keras.log_model(model, name="model", pip_requirements=["keras"])
    return active.info.run_id, info.model_uri


def _config(auc: float, fingerprint: str = "data-a", **changes) -> RegistryConfig:
    run_id, model_uri = _logged_model()
    cfg = RegistryConfig(
        registered_model=NAME,
        model_uri=model_uri,
        run_id=run_id,
        variant="improved",
        dataset_fingerprint=fingerprint,
        threshold=0.5,
        metrics={"val/auc_final": auc, "test/auc": auc, "test/accuracy": 0.5},
    )
    return cfg.model_copy(update=changes)


def _register(auc: float, fingerprint: str = "data-a", **changes) -> object:
    return run(_config(auc, fingerprint, **changes))


def _alias(name: str) -> str | None:
    version = MlflowClient().get_registered_model(NAME).aliases.get(name)
    return None if version is None else str(version)


def test_first_version_becomes_champion_and_not_challenger(tracking_store):
    result = _register(0.7)
    assert result.promoted and result.decision == "no champion yet"
    assert _alias(CHAMPION) == result.version == "1" and _alias(CHALLENGER) is None


def test_better_version_takes_champion_and_the_old_one_becomes_previous(tracking_store):
    _register(0.7)
    better = _register(0.8)
    assert better.promoted and _alias(CHAMPION) == better.version == "2"
    assert _alias(PREVIOUS) == "1" and _alias(CHALLENGER) is None


def test_challenger_and_champion_never_share_a_version(tracking_store):
    _register(0.8)
    loser = _register(0.7)
    assert _alias(CHALLENGER) == loser.version
    winner = _register(0.9)
    assert _alias(CHAMPION) == winner.version and _alias(CHALLENGER) is None


def test_worse_challenger_does_not_take_champion(tracking_store):
    first = _register(0.8)
    worse = _register(0.75)
    assert not worse.promoted
    assert _alias(CHAMPION) == first.version and _alias(CHALLENGER) == worse.version
    assert "does not beat" in worse.decision


def test_equal_score_keeps_the_sitting_champion(tracking_store):
    first = _register(0.8)
    assert not _register(0.8).promoted and _alias(CHAMPION) == first.version


def test_champion_on_other_data_is_not_compared(tracking_store):
    first = _register(0.6, fingerprint="data-a")
    other = _register(0.99, fingerprint="data-b")
    assert not other.promoted and "measured on dataset data-a" in other.decision
    assert _alias(CHAMPION) == first.version


def test_versions_carry_a_few_tags_and_all_metrics_in_one(tracking_store):
    result = _register(0.7)
    version = MlflowClient().get_model_version(NAME, result.version)
    assert set(version.tags) == {
        *("variant", "dataset_fingerprint", "threshold_p_ai", "threshold_p_real", "primary_metric", "gate"),
        *("metrics", "decision", "decisions", "model_sha256"),
    }
    assert version.tags["variant"] == "improved" and version.tags["dataset_fingerprint"] == "data-a"
    assert json.loads(version.tags["metrics"]) == {"test/accuracy": 0.5, "test/auc": 0.7, "val/auc_final": 0.7}
    assert version.tags["primary_metric"] == "val/auc_final=0.7000" and version.tags["decision"] == "promoted"
    assert json.loads(version.tags["gate"])["rule"] == "paired_bootstrap"


def test_the_threshold_is_named_on_both_scales(tracking_store):
    version = MlflowClient().get_model_version(NAME, _register(0.7, threshold=0.42).version)
    assert float(version.tags["threshold_p_real"]) == 0.42 and float(version.tags["threshold_p_ai"]) == pytest.approx(0.58)
    assert "AI-generated when P(AI-generated) > 0.5800" in version.description and "REAL when P(REAL) ≥ 0.4200" in version.description


def test_model_and_versions_are_described(tracking_store):
    _register(0.8)
    loser = _register(0.7)
    client = MlflowClient()
    assert "@champion" in client.get_registered_model(NAME).description
    described = client.get_model_version(NAME, loser.version).description
    assert "improved variant" in described and "against champion v1 at 0.8000" in described and "does not beat it" in described
    assert "| test/auc | 0.7000 |" in described


def test_failed_registration_leaves_champion_in_place(tracking_store):
    first = _register(0.7)
    with pytest.raises(MlflowException):
        run(_config(0.99, model_uri="models:/m-does-not-exist"))
    assert _alias(CHAMPION) == first.version


def test_rerun_of_the_same_run_registers_nothing_new(tracking_store):
    cfg = _config(0.7)
    assert run(cfg).version == run(cfg).version == "1"
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == 1


def test_unknown_primary_metric_names_the_field(tracking_store):
    with pytest.raises(ValueError, match=r"primary_metric='test_f2'"):
        _register(0.7, primary_metric="test_f2")


def test_list_shows_aliases_and_figures(tracking_store):
    _register(0.7)
    _register(0.6)
    rows = catalog.list_versions(NAME)
    assert [(row["version"], row["aliases"]) for row in rows] == [("2", "challenger"), ("1", "champion")]
    assert float(rows[1]["test/auc"]) == pytest.approx(0.7) and rows[1]["variant"] == "improved"


def test_hand_promotion_passes_the_same_gate(tracking_store):
    _register(0.8)
    worse = _register(0.7)
    with pytest.raises(catalog.PromotionRefused, match="does not beat"):
        catalog.promote(NAME, worse.version)
    assert _alias(CHAMPION) == "1"
    with pytest.raises(ValueError, match="needs a reason"):
        catalog.promote(NAME, worse.version, force=True)
    assert _alias(CHAMPION) == "1"
    catalog.promote(NAME, worse.version, force=True, reason="fresher data outweighs 0.1 AUC")
    assert _alias(CHAMPION) == worse.version
    assert "fresher data" in MlflowClient().get_model_version(NAME, worse.version).tags["forced_promotion"]


def test_rollback_returns_the_previous_champion(tracking_store):
    _register(0.7)
    _register(0.8)
    assert _alias(CHAMPION) == "2" and _alias(PREVIOUS) == "1"
    assert catalog.rollback(NAME) == "1"
    assert _alias(CHAMPION) == "1" and _alias(PREVIOUS) is None
    with pytest.raises(catalog.PromotionRefused, match="No earlier champion"):
        catalog.rollback(NAME)
    assert _alias(CHAMPION) == "1"


def test_rolled_back_version_is_not_promoted_again_by_a_rerun(tracking_store):
    _register(0.7)
    better = _config(0.8)
    run(better)
    catalog.rollback(NAME)
    rerun = run(better)  # what a force=True pipeline rerun of the same run does
    assert not rerun.promoted and "rolled back" in rerun.decision
    assert _alias(CHAMPION) == "1" and _alias(CHALLENGER) is None
    with pytest.raises(catalog.PromotionRefused, match="rolled back"):
        catalog.promote(NAME, rerun.version)
    catalog.promote(NAME, rerun.version, force=True, reason="the incident was elsewhere")
    assert _alias(CHAMPION) == rerun.version


def test_retry_repairs_history_written_before_a_failed_alias_move(tracking_store):
    cfg = _config(0.8)
    _register(0.7)
    client = MlflowClient()
    # A first attempt that died between its history write and its alias move.
    version = mlflow.register_model(cfg.model_uri, NAME).version
    client.set_model_version_tag(NAME, version, "metrics", json.dumps(cfg.metrics))
    client.set_model_version_tag(NAME, version, "dataset_fingerprint", "data-a")
    client.set_registered_model_tag(NAME, HISTORY_TAG, json.dumps(["1", str(version)]))
    assert _alias(CHAMPION) == "1"
    with pytest.raises(catalog.PromotionRefused, match="No earlier champion"):
        catalog.rollback(NAME)  # the dangling entry is not taken for a champion
    assert run(cfg).promoted
    assert _alias(CHAMPION) == str(version) and json.loads(client.get_registered_model(NAME).tags[HISTORY_TAG]) == ["1", str(version)]
    assert catalog.rollback(NAME) == "1"


def test_old_per_metric_tags_are_still_read(tracking_store):
    first = _register(0.7)
    client = MlflowClient()
    client.delete_model_version_tag(NAME, first.version, "metrics")
    client.set_model_version_tag(NAME, first.version, "metric.test_auc", "0.9")
    assert not _register(0.8, primary_metric="test/auc", gate=GateConfig(rule="point_estimate")).promoted
