"""Register a trained model and promote it by alias: @challenger always, @champion only if it wins.

The gate compares the primary metric on the same dataset fingerprint: a champion measured on
other data can't be beaten or lost to by a number from this data. @champion moves in one
alias call at the very end, so any failure before it leaves the champion where it was.
Versions are never deleted.
"""

from __future__ import annotations

import json
import math

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from components.cli_support import component_main
from components.config import Strict

CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_TAG_PREFIX = "metric."
HISTORY_TAG = "champion_history"  # JSON list of versions, oldest first


class RegistryConfig(Strict):
    registered_model: str = "ai-image-detector"
    model_uri: str
    run_id: str
    variant: str
    dataset_fingerprint: str
    threshold: float
    metrics: dict[str, float]
    primary_metric: str = "test/auc"
    # Fingerprint of shards + variant config: a scheduled run finding it registered skips training.
    config_key: str | None = None


class RegistryResult(Strict):
    registered_model: str
    version: str
    promoted: bool
    decision: str
    champion_version: str | None


def run(cfg: RegistryConfig) -> RegistryResult:
    if cfg.primary_metric not in cfg.metrics:
        raise ValueError(f"primary_metric is not among the metrics {sorted(cfg.metrics)}. Received: primary_metric={cfg.primary_metric!r}")
    client = MlflowClient()
    registered = _existing_version(client, cfg) or _register(cfg)
    version = client.get_model_version(cfg.registered_model, registered.version)  # with its tags
    client.set_registered_model_alias(cfg.registered_model, CHALLENGER, version.version)
    champion = champion_version(client, cfg.registered_model)
    promote, decision = should_promote(version, champion, cfg.primary_metric)
    client.set_model_version_tag(cfg.registered_model, version.version, "promotion_decision", decision)
    if promote and not (champion and champion.version == version.version):
        set_champion(client, cfg.registered_model, str(version.version))
    current = champion_version(client, cfg.registered_model)
    return RegistryResult(
        registered_model=cfg.registered_model,
        version=str(version.version),
        promoted=promote,
        decision=decision,
        champion_version=str(current.version) if current else None,
    )


def should_promote(candidate: ModelVersion, champion: ModelVersion | None, metric: str) -> tuple[bool, str]:
    """The gate, as a pure decision on two registered versions: (promote?, why) for the record."""
    value = float(candidate.tags.get(METRIC_TAG_PREFIX + metric, "nan"))
    if math.isnan(value):
        return False, f"v{candidate.version} has no {metric}"
    if champion is None:
        return True, "no champion yet"
    if str(champion.version) == str(candidate.version):
        return True, f"v{candidate.version} is the champion"
    champion_data, candidate_data = champion.tags.get("dataset_fingerprint"), candidate.tags.get("dataset_fingerprint")
    if champion_data != candidate_data:
        return False, f"champion v{champion.version} was measured on dataset {champion_data}, not {candidate_data}"
    champion_value = float(champion.tags.get(METRIC_TAG_PREFIX + metric, "nan"))
    if math.isnan(champion_value) or value > champion_value:
        return True, f"{metric} {value:.4f} beats champion v{champion.version} at {champion_value:.4f}"
    return False, f"{metric} {value:.4f} does not beat champion v{champion.version} at {champion_value:.4f}"


def set_champion(client: MlflowClient, name: str, version: str) -> None:
    """Move @champion and append to the history that rollback walks back through."""
    history = champion_history(client, name)
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps([*history, version]))


def champion_history(client: MlflowClient, name: str) -> list[str]:
    return json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def find_version(name: str, config_key: str) -> dict | None:
    """The newest version trained from exactly these shards and this variant config, if any."""
    try:
        found = MlflowClient().search_model_versions(f"name='{name}' and tag.config_key='{config_key}'")
    except MlflowException:
        return None
    if not found:
        return None
    version = max(found, key=lambda item: int(item.version))
    metrics = {
        key.removeprefix(METRIC_TAG_PREFIX): float(value) for key, value in version.tags.items() if key.startswith(METRIC_TAG_PREFIX)
    }
    return {
        "version": str(version.version),
        "run_id": version.run_id,
        "metrics": metrics,
        "threshold": float(version.tags.get("threshold", "0.5")),
    }


def champion_version(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _existing_version(client: MlflowClient, cfg: RegistryConfig) -> ModelVersion | None:
    """A rerun of the same run registers nothing new."""
    try:
        found = client.search_model_versions(f"name='{cfg.registered_model}' and run_id='{cfg.run_id}'")
    except MlflowException:
        return None
    return max(found, key=lambda version: int(version.version), default=None)


def _register(cfg: RegistryConfig) -> ModelVersion:
    tags = {
        "variant": cfg.variant,
        "dataset_fingerprint": cfg.dataset_fingerprint,
        "threshold": f"{cfg.threshold:.6f}",
        **({"config_key": cfg.config_key} if cfg.config_key else {}),
        **{METRIC_TAG_PREFIX + name: f"{value:.6f}" for name, value in cfg.metrics.items()},
    }
    return mlflow.register_model(cfg.model_uri, cfg.registered_model, tags=tags)


def main(argv: list[str] | None = None) -> None:
    component_main("detector register", __doc__, RegistryConfig, run, argv)


if __name__ == "__main__":
    main()
