"""Hand operations on the registry: list versions, promote one, roll @champion back.

A hand promotion passes the same gate as an automatic one; `force` skips the gate and records
the reason on the version. Rollback walks the champion history that every promotion appends
to. Nothing here deletes a version, and a refused operation leaves @champion as it was.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime

from mlflow import MlflowClient

from components.registry import CHAMPION, HISTORY_TAG, METRIC_TAG_PREFIX, champion_history, champion_version, set_champion, should_promote


class PromotionRefused(RuntimeError):
    """The gate said no; the message says why, and @champion has not moved."""


def list_versions(name: str) -> list[dict[str, str]]:
    """One row per version, newest first, with its aliases and headline figures."""
    client = MlflowClient()
    # search_model_versions leaves aliases empty; the registered model knows them.
    aliases: dict[str, list[str]] = {}
    for alias, number in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    rows = []
    for version in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version), reverse=True):
        tags = version.tags
        rows.append(
            {
                "version": str(version.version),
                "aliases": ",".join(sorted(aliases.get(str(version.version), []))),
                "variant": tags.get("variant", ""),
                "test/auc": tags.get(METRIC_TAG_PREFIX + "test/auc", ""),
                "test/f1": tags.get(METRIC_TAG_PREFIX + "test/f1", ""),
                "threshold": tags.get("threshold", ""),
                "dataset": tags.get("dataset_fingerprint", ""),
                "run_id": version.run_id or "",
                "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M"),
            }
        )
    return rows


def promote(name: str, version: str, metric: str = "test/auc", force: bool = False, reason: str | None = None) -> str:
    """Make `version` the champion if it passes the gate, or unconditionally with force + reason."""
    if force and not (reason and reason.strip()):
        raise ValueError("A forced promotion needs a reason; it is recorded on the version. Received: reason=None")
    client = MlflowClient()
    candidate = client.get_model_version(name, version)
    passed, decision = should_promote(candidate, champion_version(client, name), metric)
    if not passed and not force:
        raise PromotionRefused(f"v{version} not promoted: {decision}. Use force with a reason to override.")
    if force and not passed:
        client.set_model_version_tag(name, version, "forced_promotion", f"{reason} (by {getpass.getuser()}; gate said: {decision})")
        decision = f"forced: {reason}"
    set_champion(client, name, str(version))
    return decision


def rollback(name: str) -> str:
    """Give @champion back to the version that held it before the current one."""
    client = MlflowClient()
    history = champion_history(client, name)
    current = champion_version(client, name)
    if current is None or len(history) < 2:
        raise PromotionRefused(f"No earlier champion of {name!r} to roll back to. Champion history: {history}")
    previous = history[-2]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[:-1]))
    client.set_model_version_tag(name, str(current.version), "rolled_back_at", datetime.now(UTC).isoformat(timespec="seconds"))
    return previous
