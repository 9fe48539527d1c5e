"""Hand operations on the registry: list versions, promote one, roll @champion back.

A hand promotion passes the same gate as an automatic one, under the same promotion lock;
`force` skips the gate and records the reason on the version. Rollback gives @champion to
@previous and marks the version it leaves as rolled back, which the gate then never promotes
again. Nothing here deletes a version, and a refused operation leaves every alias as it was.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from components.config import GateConfig
from components.contracts import CHAMPION, PRIMARY_METRIC
from components.registry.describe import record_decision
from components.registry.gate import should_promote
from components.registry.promotion_lock import promotion_lock
from components.registry.register import champion_history, champion_version, gate, move_aliases
from components.registry.tags import DECISION_TAG, GATE_TAG, HISTORY_TAG, ROLLED_BACK_TAG, THRESHOLD_AI_TAG, version_metrics


class PromotionRefused(RuntimeError):
    """The gate said no; the message says why, and @champion has not moved."""


def list_versions(name: str) -> list[dict[str, str]]:
    """One row per version, newest first, with its aliases, headline figures and decision."""
    client = MlflowClient()
    # search_model_versions leaves aliases empty; the registered model knows them.
    aliases: dict[str, list[str]] = {}
    for alias, number in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    rows = []
    for version in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version), reverse=True):
        tags, metrics = version.tags, version_metrics(version)
        rows.append(
            {
                "version": str(version.version),
                "aliases": ",".join(sorted(aliases.get(str(version.version), []))),
                "variant": tags.get("variant", ""),
                **{name: f"{metrics[name]:.4f}" if name in metrics else "" for name in (PRIMARY_METRIC, "test/auc", "test/f1")},
                THRESHOLD_AI_TAG: tags.get(THRESHOLD_AI_TAG, ""),
                "decision": "rolled back" if ROLLED_BACK_TAG in tags else tags.get(DECISION_TAG, ""),
                "dataset": tags.get("dataset_fingerprint", ""),
                "run_id": version.run_id or "",
                "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M"),
            }
        )
    return rows


def promote(name: str, version: str, metric: str | None = None, force: bool = False, reason: str | None = None) -> str:
    """Make `version` the champion if it passes the gate, or unconditionally with force + reason.
    The gate is the one the version was registered under; `metric` replaces its primary metric."""
    if force and not (reason and reason.strip()):
        raise ValueError("A forced promotion needs a reason; it is recorded on the version. Received: reason=None")
    client = MlflowClient()
    metric, rule = registered_gate(client.get_model_version(name, version), metric)  # an unknown version fails before the lock
    with promotion_lock(client, name) as lock:
        if not force:
            # A refusal by hand leaves the version's record alone: ask the pure gate first.
            passed, decision = should_promote(client.get_model_version(name, version), champion_version(client, name), metric, rule)
            if not passed:
                raise PromotionRefused(f"v{version} not promoted: {decision}. Use force with a reason to override.")
        forced = f"{reason} (by {getpass.getuser()})" if force else None
        if forced:
            lock.verify()
            client.set_model_version_tag(name, version, "forced_promotion", forced)
        _, decision = gate(client, name, str(version), metric, rule, lock.verify, forced=forced)
    return decision


def registered_gate(version: ModelVersion, metric: str | None) -> tuple[str, GateConfig]:
    """(metric, rule) the version was registered under; versions from before the gate was recorded
    compared test/auc by point estimate, and keep that."""
    registered = version.tags.get("primary_metric", "").split("=")[0]
    if GATE_TAG not in version.tags:
        return metric or registered or "test/auc", GateConfig(rule="point_estimate")
    return metric or registered or PRIMARY_METRIC, GateConfig.model_validate_json(version.tags[GATE_TAG])


def rollback(name: str) -> str:
    """Give @champion back to @previous; the version it leaves is marked rolled back."""
    client = MlflowClient()
    with promotion_lock(client, name) as lock:
        history = champion_history(client, name)
        if len(history) < 2 or client.get_registered_model(name).aliases.get(CHAMPION) is None:
            raise PromotionRefused(f"No earlier champion of {name!r} to roll back to. Champion history: {history}")
        leaving, remaining = history[-1], history[:-1]
        lock.verify()
        when = datetime.now(UTC).isoformat(timespec="seconds")
        client.set_model_version_tag(name, leaving, ROLLED_BACK_TAG, f"{when} by {getpass.getuser()}")
        record_decision(client, client.get_model_version(name, leaving), "rolled back", f"@champion given back to v{remaining[-1]}")
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(remaining))
        move_aliases(client, name, remaining, lock.verify)
        record_decision(client, client.get_model_version(name, remaining[-1]), "restored", f"@champion back from v{leaving} by rollback")
    return remaining[-1]
