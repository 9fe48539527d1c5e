"""kill -9 of a registration at a seeded random moment, then a rerun: the registry ends as a
clean registration leaves it (versions, tags, aliases, champion history)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from mlflow import MlflowClient

from components.registry.loading import SHA256_TAG, logged_model_sha256
from components.registry.register import HISTORY_TAG, run
from tests.faults.racing import LAUNCH, REPO, _wait_for_imports
from tests.faults.sharding import SEED
from tests.faults.test_promotion_race import _config


def _state(name: str) -> dict:
    client = MlflowClient()
    model = client.get_registered_model(name)
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda version: int(version.version))
    return {
        "aliases": {alias: str(version) for alias, version in model.aliases.items()},
        "history": json.loads(model.tags.get(HISTORY_TAG, "[]")),
        "versions": [_undated(version.tags) for version in versions],
        "decisions": [
            [(entry["decision"], entry["reason"]) for entry in json.loads(version.tags.get("decisions", "[]"))] for version in versions
        ],
        "digests_match": [version.tags.get(SHA256_TAG) == logged_model_sha256(version.source) for version in versions],
        "described": [bool(version.description) for version in versions],
    }


def _undated(tags: dict[str, str]) -> dict[str, str]:
    """The tags two runs must agree on. The digest differs between two models by nature (what
    must hold is that it is the file's), and when a decision was made, to the minute, differs
    between the two runs: what was decided and why must not."""
    kept = {key: value for key, value in tags.items() if key not in ("variant", SHA256_TAG, "decisions")}
    if "superseded_by" in kept:
        kept["superseded_by"] = kept["superseded_by"].split(" on ")[0]
    return kept


def _registered(name: str, auc: float, **changes):
    return _config(auc).model_copy(update={"registered_model": name, **changes})


def test_rerun_after_kill_9_equals_a_clean_registration(tracking_store, tmp_path):
    run(_registered("clean", 0.7))
    began = time.monotonic()
    run(_registered("clean", 0.9))
    duration = time.monotonic() - began
    run(_registered("killed", 0.7))
    candidate = _registered("killed", 0.9)
    (tmp_path / "cfg.json").write_text(candidate.model_dump_json())
    start = tmp_path / "start"
    arguments = [sys.executable, "-c", LAUNCH, "components.registry.register", str(start), "--config", str(tmp_path / "cfg.json")]
    victim = subprocess.Popen(arguments, cwd=REPO, env={**os.environ, "MLFLOW_TRACKING_URI": tracking_store})
    _wait_for_imports([victim])
    delay = random.Random(SEED).uniform(0.0, 0.8) * duration  # within the time a clean registration took
    start.touch()
    time.sleep(delay)  # the kill point itself: seeded, not a wait for a result
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, f"the registration finished before its kill point ({delay:.3f} s)"
    run(candidate)
    assert _state("killed") == _state("clean"), f"FAULT_SEED={SEED}, killed {delay:.3f} s after the start"
