"""The kfp side of the tests runs in .venv-kfp (kfp needs protobuf<7); `make test` creates it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KFP_PYTHON = REPO / ".venv-kfp" / "bin" / "python"


@pytest.fixture(scope="session")
def kfp_python() -> str:
    if not KFP_PYTHON.exists():
        pytest.fail(f"{KFP_PYTHON} is missing: create the kfp environment with `make kfp-env` (make test does).")
    return str(KFP_PYTHON)


def detector(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The console script as a user runs it: `detector kfp …` from the main environment hands over to .venv-kfp."""
    command = [sys.executable, "-m", "components.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env or dict(os.environ), capture_output=True, text=True)


def in_kfp_env(kfp_python: str, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([kfp_python, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout
