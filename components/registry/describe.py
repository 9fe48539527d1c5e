"""A version's record: each gate decision appended to its history, and its description rebuilt
from what ran (the training run's own summary of its effective config), the threshold on both
scales, the gate it was judged by, that history and its metrics.

The description is rebuilt whole from tags each time, so it never keeps a claim a later decision
made stale ("no champion yet" on a version another one has since displaced).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from components.config import GateConfig
from components.record import MODEL_SUMMARY_TAG
from components.registry.tags import (
    DECISION_TAG,
    DECISIONS_TAG,
    GATE_TAG,
    SUPERSEDED_TAG,
    THRESHOLD_AI_TAG,
    positive_class_tagged,
    positive_threshold,
    version_metrics,
)


def record_decision(client: MlflowClient, version: ModelVersion, verdict: str, reason: str) -> None:
    """Append (now, verdict, reason) to the version's history, unless it is already the latest
    entry (a retry), then set the decision tag and the description from it."""
    version = client.get_model_version(version.name, version.version)  # fresh tags: a retry may have written some
    history = decisions(version)
    if not history or (history[-1]["decision"], history[-1]["reason"]) != (verdict, reason):
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        history.append({"when": now, "decision": verdict, "reason": reason})
        client.set_model_version_tag(version.name, version.version, DECISIONS_TAG, json.dumps(history))
    client.set_model_version_tag(version.name, version.version, DECISION_TAG, verdict)
    if verdict.startswith("superseded by "):
        superseded = f"{verdict.removeprefix('superseded by ')} on {history[-1]['when']}"
        client.set_model_version_tag(version.name, version.version, SUPERSEDED_TAG, superseded)
    elif SUPERSEDED_TAG in version.tags and verdict in ("promoted", "forced", "restored"):  # champion again
        client.delete_model_version_tag(version.name, version.version, SUPERSEDED_TAG)
    updated = client.get_model_version(version.name, version.version)
    client.update_model_version(version.name, version.version, description=description(updated))


def decisions(version: ModelVersion) -> list[dict[str, str]]:
    return json.loads(version.tags.get(DECISIONS_TAG, "[]"))


def description(version: ModelVersion) -> str:
    tags = version.tags
    history = decisions(version)
    latest = history[-1] if history else {"decision": tags.get(DECISION_TAG, "registered"), "reason": "", "when": ""}
    lines = [
        f"{tags.get('variant', '?')} variant: {_model_summary(version.run_id) or 'a ResNet50 detector'}. "
        f"Trained on dataset {tags.get('dataset_fingerprint', '?')} (config key {tags.get('config_key', '-')}) in run {version.run_id}.",
        "",
        f"**{latest['decision'].capitalize()}**{': ' + latest['reason'] if latest['reason'] else ''}.",
        "",
        _threshold_line(tags),
        "",
        f"Gate: {_gate_line(tags)}.",
    ]
    if history:
        lines += ["", "Decisions, oldest first:", ""]
        lines += [f"- {entry['when']}: {entry['decision']}: {entry['reason']}" for entry in history]
    rows = "\n".join(f"| {key} | {value:.4f} |" for key, value in sorted(version_metrics(version).items()))
    lines += ["", "| metric | value |", "|---|---|", rows]
    return "\n".join(lines) + "\n"


def _threshold_line(tags: dict[str, str]) -> str:
    on_positive = positive_threshold(tags)
    if THRESHOLD_AI_TAG not in tags:
        return f"Decision threshold {on_positive} on the model's positive class (registered before thresholds named their scale)."
    positive = positive_class_tagged(tags)
    report = f" (in the report's terms: {positive} when P({positive}) ≥ {on_positive:.4f})" if positive else ""
    return f"Verdict: AI-generated when P(AI-generated) > {float(tags[THRESHOLD_AI_TAG]):.4f}, tuned on validation{report}."


def _gate_line(tags: dict[str, str]) -> str:
    metric = tags.get("primary_metric", "?").split("=")[0]
    rule = GateConfig.model_validate_json(tags[GATE_TAG]) if GATE_TAG in tags else None
    return f"{metric}, {rule.describe()}" if rule else f"{metric}, point estimate (registered before the bootstrap gate)"


def _model_summary(run_id: str | None) -> str | None:
    """What the training run says it trained (components/record.py, from its effective config)."""
    if not run_id:
        return None
    try:
        return MlflowClient().get_run(run_id).data.tags.get(MODEL_SUMMARY_TAG)
    except MlflowException:
        return None
