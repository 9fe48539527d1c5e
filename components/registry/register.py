"""Register a trained model and gate it by alias: @champion serves, @challenger is the newest
version that has not won, @previous is the champion before the current one (rollback's target).

The gate (components/registry/gate.py) compares the primary metric, on validation by default and
beyond bootstrap noise, on the same dataset fingerprint: a champion measured on other data can't
be beaten or lost to by a number from this data. A version that was rolled back never passes the
gate again; only a forced promotion brings it back.

Promotion is compare-and-set: the gate reads @champion and the aliases move under one lock
(components/registry/promotion_lock.py), so two registrations at once can't both beat the old champion.
Each step writes the record before the state it describes (decision → champion history → aliases),
and every step is idempotent, so a retry after a failure anywhere repairs what was half done.
Versions are never deleted.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from components.cli_support import component_main
from components.config import DEFAULT_GATE, GateConfig
from components.contracts import CHALLENGER, CHAMPION, PREVIOUS, RegisteredVersion, RegistryConfig, RegistryResult
from components.registry import loading, serving_model
from components.registry.describe import record_decision
from components.registry.gate import should_promote
from components.registry.promotion_lock import promotion_lock
from components.registry.tags import (
    GATE_TAG,
    HISTORY_TAG,
    METRICS_TAG,
    ROLLED_BACK_TAG,
    positive_threshold,
    threshold_tags,
    version_metrics,
)

MANIFEST = "data/manifest.json"  # the shard manifest training logs in its run
MODEL_DESCRIPTION = (
    "Detects AI-generated images: P(AI-generated) per image, from a ResNet50 trained on real vs generated images "
    "(each version says how: fine-tuned from pretrained weights or trained from scratch). "
    "@champion is the version that serves; @challenger is the newest version that has not (yet) beaten it; "
    "@previous is the champion before the current one, which `detector models rollback` restores. "
    "Each version's description says what it is, and the history of the gate's decisions on it."
)


def run(cfg: RegistryConfig) -> RegistryResult:
    if cfg.primary_metric not in cfg.metrics:
        raise ValueError(f"primary_metric is not among the metrics {sorted(cfg.metrics)}. Received: primary_metric={cfg.primary_metric!r}")
    client = MlflowClient()
    registered = _existing_version(client, cfg) or _register(cfg)
    if not client.get_registered_model(cfg.registered_model).description:
        client.update_registered_model(cfg.registered_model, description=MODEL_DESCRIPTION)
    with promotion_lock(client, cfg.registered_model) as lock:
        promoted, decision = gate(client, cfg.registered_model, str(registered.version), cfg.primary_metric, cfg.gate, lock.verify)
    current = champion_version(client, cfg.registered_model)
    return RegistryResult(
        registered_model=cfg.registered_model,
        version=str(registered.version),
        promoted=promoted,
        decision=decision,
        champion_version=str(current.version) if current else None,
    )


def gate(
    client: MlflowClient,
    name: str,
    version: str,
    metric: str,
    rule: GateConfig = DEFAULT_GATE,
    verify=lambda: None,
    forced: str | None = None,
) -> tuple[bool, str]:
    """Under the promotion lock: re-read @champion, decide, record, then move the aliases.

    `forced` (a reason) promotes whatever the gate says. `verify` is the lock's check, called
    before each write. The champion it displaces is recorded as superseded before the aliases move."""
    candidate = client.get_model_version(name, version)
    champion = champion_version(client, name)
    passed, reason = should_promote(candidate, champion, metric, rule)
    promote = passed or forced is not None
    if forced is not None and not passed:
        reason = f"forced: {forced} (the gate said: {reason})"
    already_champion = champion is not None and str(champion.version) == version
    if not already_champion:  # a retry keeps the reason first recorded, not "is the champion"
        verdict = ("forced" if not passed else "promoted") if promote else "not promoted"
        verify()
        record_decision(client, candidate, verdict, reason)
        if promote and champion is not None:
            record_decision(client, champion, f"superseded by v{version}", f"v{version} took @champion")
    if promote:
        set_champion(client, name, version, verify)
    elif ROLLED_BACK_TAG not in candidate.tags:  # it has had its turn: not a candidate any more
        _offer_as_challenger(client, name, version, verify)
    return promote, reason


def set_champion(client: MlflowClient, name: str, version: str, verify=lambda: None) -> None:
    """Lock holders only. The history is written before the aliases move, so rollback never
    finds an alias its history does not explain; rerun, this repairs a half-done promotion."""
    history = champion_history(client, name)
    if not history or history[-1] != version:
        history.append(version)
    verify()
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    move_aliases(client, name, history, verify)


def move_aliases(client: MlflowClient, name: str, history: list[str], verify=lambda: None) -> None:
    """@champion to the history's last entry, @previous to the one before (or none), and
    @challenger off any version that is not newer than the champion."""
    aliases = client.get_registered_model(name).aliases
    verify()
    if len(history) > 1:
        client.set_registered_model_alias(name, PREVIOUS, history[-2])
    elif PREVIOUS in aliases:
        client.delete_registered_model_alias(name, PREVIOUS)
    client.set_registered_model_alias(name, CHAMPION, history[-1])
    challenger = aliases.get(CHALLENGER)
    if challenger is not None and int(challenger) <= int(history[-1]):
        client.delete_registered_model_alias(name, CHALLENGER)


def champion_history(client: MlflowClient, name: str) -> list[str]:
    """The champion history, cut back to agree with @champion: entries after the champion's last
    appearance are a promotion that died before its alias moved."""
    model = client.get_registered_model(name)
    history = [str(version) for version in json.loads(model.tags.get(HISTORY_TAG, "[]"))]
    champion = model.aliases.get(CHAMPION)
    if champion is None:
        return history
    champion = str(champion)
    if champion not in history:  # moved by hand outside this module
        return [*history, champion]
    return history[: len(history) - history[::-1].index(champion)]


def find_version(name: str, config_key: str) -> RegisteredVersion | None:
    """The newest version trained from exactly these shards and this variant config, if any."""
    try:
        found = MlflowClient().search_model_versions(f"name='{name}' and tag.config_key='{config_key}'")
    except MlflowException:
        return None
    if not found:
        return None
    version = max(found, key=lambda item: int(item.version))
    return RegisteredVersion(
        registered_model=name,
        version=str(version.version),
        run_id=version.run_id,
        metrics=version_metrics(version),
        threshold=positive_threshold(version.tags) or 0.5,
    )


def champion_version(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _offer_as_challenger(client: MlflowClient, name: str, version: str, verify) -> None:
    """@challenger is the newest loser: an older version registered again does not take it back."""
    current = client.get_registered_model(name).aliases.get(CHALLENGER)
    if current is None or int(current) <= int(version):
        verify()
        client.set_registered_model_alias(name, CHALLENGER, version)


def _existing_version(client: MlflowClient, cfg: RegistryConfig) -> ModelVersion | None:
    """A rerun of the same run registers nothing new."""
    try:
        found = client.search_model_versions(f"name='{cfg.registered_model}' and run_id='{cfg.run_id}'")
    except MlflowException:
        return None
    return max(found, key=lambda version: int(version.version), default=None)


def _register(cfg: RegistryConfig) -> ModelVersion:
    """The version's source is the serving model (components/registry/serving_model.py) when the
    run carries the shard manifest that serving needs; a model trained outside the pipeline has
    none, and is registered as the bare Keras model."""
    with tempfile.TemporaryDirectory(prefix="register-") as scratch:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=cfg.model_uri, dst_path=scratch))
        digest = loading.file_sha256(loading.keras_file(local, cfg.model_uri))  # every load verifies it
        source = cfg.model_uri
        if MANIFEST in {item.path for item in MlflowClient().list_artifacts(cfg.run_id, "data")}:
            manifest = mlflow.artifacts.load_dict(f"runs:/{cfg.run_id}/{MANIFEST}")
            config = {"registered_model": cfg.registered_model, "run_id": cfg.run_id, "threshold": cfg.threshold, "model_sha256": digest}
            source = serving_model.log(cfg.run_id, local, manifest, config)
    primary = cfg.metrics[cfg.primary_metric]
    tags = {
        "variant": cfg.variant,
        "dataset_fingerprint": cfg.dataset_fingerprint,
        **threshold_tags(cfg.threshold, cfg.positive_class, cfg.generated_class),
        "primary_metric": f"{cfg.primary_metric}={primary:.4f}",
        GATE_TAG: cfg.gate.model_dump_json(),
        METRICS_TAG: json.dumps({name: round(value, 6) for name, value in sorted(cfg.metrics.items())}),
        **({"config_key": cfg.config_key} if cfg.config_key else {}),
        loading.SHA256_TAG: digest,
    }
    return mlflow.register_model(source, cfg.registered_model, tags=tags)


def main(argv: list[str] | None = None) -> None:
    component_main("detector register", __doc__, RegistryConfig, run, argv)


if __name__ == "__main__":
    main()
