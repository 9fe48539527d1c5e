"""The images' Dockerfiles, requirement locks and build context, checked without a docker engine."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from tests.infra.conftest import DOCKER_DIR, REPO, tool

DOCKERFILES = sorted(DOCKER_DIR.glob("*.Dockerfile"))
LOCKS = {name: DOCKER_DIR / f"requirements-{name}.txt" for name in ("cpu", "gpu", "mlflow")}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"{path.name}: not pinned with ==: {line!r}"
            pins[name] = version
    return pins


def test_three_images_exist():
    assert {path.name for path in DOCKERFILES} == {"cpu.Dockerfile", "gpu.Dockerfile", "gpu-jax.Dockerfile", "mlflow.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_passes(dockerfile: Path):
    result = subprocess.run([tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_an_unpinned_root_image(tmp_path: Path):
    # The lint step must be able to fail: an unpinned base image (DL3007) and an unpinned pip
    # install (DL3013) are what it exists to catch.
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text('FROM python:latest\nRUN pip install --no-cache-dir tensorflow\nENTRYPOINT ["detector"]\n')
    result = subprocess.run([tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_image_is_pinned_and_runs_as_numeric_non_root_user(dockerfile: Path):
    steps = instructions(dockerfile)
    base = [args for keyword, args in steps if keyword == "FROM"]
    assert len(base) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base[0]), base
    users = [args for keyword, args in steps if keyword == "USER"]
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert users and users[-1].isdigit() and users[-1] != "0", users
    installs = [args for keyword, args in steps if keyword == "RUN" and "pip install" in args]
    assert installs and all("--requirement" in args or "--no-deps ." in args for args in installs), installs


@pytest.mark.parametrize("name", ["cpu", "gpu", "gpu-jax"])
def test_pipeline_images_enter_through_the_detector_cli(name: str):
    steps = instructions(DOCKER_DIR / f"{name}.Dockerfile")
    assert ("ENTRYPOINT", '["detector"]') in steps
    assert ("COPY", f"docker/requirements-{name}.txt /tmp/requirements.txt") in steps


def test_mlflow_image_serves_with_basic_auth_and_a_healthcheck():
    steps = dict(instructions(DOCKER_DIR / "mlflow.Dockerfile"))
    assert "/health" in steps["HEALTHCHECK"]
    assert steps["ENTRYPOINT"] == '["mlflow-entrypoint"]'
    entrypoint = (DOCKER_DIR / "mlflow-entrypoint.sh").read_text()
    assert "exec mlflow server --app-name basic-auth --serve-artifacts" in entrypoint


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_requirement_is_pinned(name: str):
    pins = read_lock(LOCKS[name])
    assert pins["mlflow"] == "3.17.2"
    assert "boto3" in pins


def test_gpu_lock_is_the_cpu_lock_plus_cuda_wheels():
    # CI installs and imports the CPU set only (the CUDA wheels are gigabytes); that stands in
    # for the GPU set as long as the two agree on every shared package.
    cpu, gpu = read_lock(LOCKS["cpu"]), read_lock(LOCKS["gpu"])
    assert {name: gpu[name] for name in cpu} == cpu
    extra = set(gpu) - set(cpu)
    assert extra and all(name.startswith("nvidia-") for name in extra), sorted(extra)
    assert gpu["tensorflow"] == "2.21.0"


def test_mlflow_server_and_clients_share_one_release():
    cpu, server = read_lock(LOCKS["cpu"]), read_lock(LOCKS["mlflow"])
    assert server["mlflow"] == cpu["mlflow"]
    assert "psycopg2-binary" in server and "flask-wtf" in server  # PostgreSQL, and the auth extra


def test_build_context_holds_what_the_images_copy_and_no_credentials(tmp_path: Path):
    # A tree with the project's files plus the ones that must never reach an image layer,
    # filtered by docker-py's implementation of .dockerignore matching.
    wanted = ["pyproject.toml", "README.md", "mlflow.env", "prefect.yaml", "components/cli.py", "flows/pipeline.py"]
    wanted += [f"docker/requirements-{name}.txt" for name in LOCKS] + [
        "docker/mlflow-entrypoint.sh",
        "docker/mlflow-users.py",
        "docker/requirements-gpu-jax.txt",
    ]
    unwanted = ["mlflow.local.env", "infra/stack.env", "infra/kubernetes/credentials.env", "work/demo-data/REAL/a.png"]
    unwanted += [".venv/bin/python", "mlflow.db", "mlruns/0/meta.yaml", "tests/conftest.py", "components/__pycache__/cli.pyc"]
    for relative in wanted + unwanted:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    patterns = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    context = set(exclude_paths(str(tmp_path), patterns))
    assert set(wanted) <= context
    assert not set(unwanted) & context
    copied = {
        source
        for dockerfile in DOCKERFILES
        for keyword, args in instructions(dockerfile)
        if keyword == "COPY"
        for source in args.split()[:-1]
    }
    assert copied <= context, copied - context
