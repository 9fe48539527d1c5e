"""Secrets and privilege in the stacks, checked offline: placeholder refusal, per-service
database roles, the pipeline's least-privilege MLflow user and S3 policy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.infra.conftest import INFRA_DIR, REPO

SERVICES_SCRIPT = INFRA_DIR / "local" / "services.sh"


def test_services_script_refuses_an_example_secret_before_starting_anything(tmp_path: Path):
    stack_dir = tmp_path / "stack"
    # No binaries: should the check ever be skipped, nothing can start either.
    env = {**os.environ, "STACK_DIR": str(stack_dir), "BIN": str(tmp_path / "no-bin"), "AWS_SECRET_ACCESS_KEY": "change-me"}
    result = subprocess.run(["bash", str(SERVICES_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert "AWS_SECRET_ACCESS_KEY" in result.stderr and not stack_dir.exists()


def test_pipeline_images_switch_pickle_deserialization_off():
    for name in ("cpu", "gpu"):
        dockerfile = (REPO / "docker" / f"{name}.Dockerfile").read_text()
        assert "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false" in dockerfile, name
