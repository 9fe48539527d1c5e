"""The same pipeline definition through kfp.local, end to end on tiny data, into a real MLflow sqlite store."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from components.registry.register import CHAMPION
from tests.kfp.conftest import detector


@pytest.mark.slow
def test_local_kfp_run_registers_the_champion_tagged_with_the_kfp_run(
    kfp_python: str, tiny_dataset: Path, tracking_store: str, tmp_path: Path
):
    # The tiny overrides the flow tests use: one epoch of 32 px images.
    overrides = {
        "data": {"image_size": 32, "images_per_shard": 16},
        "variant": {"fit": {"epochs": 1, "batch_size": 16}},
        "work_dir": str(tmp_path / "work"),
        "tracking": {"registered_model": "kfp-local-detector"},
    }
    outputs = tmp_path / "kfp-outputs"
    env = {**os.environ, "DETECTOR_MAIN_PYTHON": sys.executable}
    args = ["--variants", "baseline", "--data", str(tiny_dataset), "--overrides", json.dumps(overrides), "--outputs", str(outputs)]
    done = detector("kfp", "local", *args, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    registered = json.loads(done.stdout[done.stdout.rindex("\n{") :])
    assert (registered["registered_model"], registered["version"], registered["champion_version"]) == ("kfp-local-detector", "1", "1")
    client = MlflowClient()
    champion = client.get_model_version_by_alias("kfp-local-detector", CHAMPION)
    # The first version wins the empty registry, so it serves and is nobody's challenger.
    assert {alias: str(version) for alias, version in client.get_registered_model("kfp-local-detector").aliases.items()} == {CHAMPION: "1"}
    run = client.get_run(champion.run_id)
    assert run.data.tags["variant"] == "baseline" and "test/auc" in run.data.metrics
    assert run.data.tags["kfp_run_id"] and run.data.tags["kfp_run_id"] == champion.tags["kfp_run_id"]
    (pipeline_run,) = outputs.iterdir()  # kfp.local's record of the run: one folder per task
    assert len([task for task in pipeline_run.iterdir() if task.is_dir()]) == 5
