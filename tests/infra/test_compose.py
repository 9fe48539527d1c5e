"""infra/compose.yaml, checked by Docker Compose's own loader (no engine needed) and the
compose-spec JSON schema."""

from __future__ import annotations

import json
import subprocess

import pytest
from mlflow.server.security_utils import is_allowed_host_header

from components.settings import read_env_file
from tests.infra.conftest import INFRA_DIR, REPO, compose_binary, tool

COMPOSE_FILE = INFRA_DIR / "compose.yaml"
EXAMPLE_ENV = INFRA_DIR / "stack.env.example"
ONE_SHOTS = {"preflight", "minio-init", "mlflow-users", "deploy"}


def compose(*args: str, env_file: bool = True) -> subprocess.CompletedProcess[str]:
    command = [compose_binary(), "--project-directory", str(INFRA_DIR), "-f", str(COMPOSE_FILE)]
    if env_file:
        command += ["--env-file", str(EXAMPLE_ENV)]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def stack() -> dict:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_loads_with_the_example_env_file(stack: dict):
    assert set(stack["services"]) == {
        "preflight",
        "postgres",
        "minio",
        "minio-init",
        "mlflow",
        "mlflow-users",
        "prefect-server",
        "deploy",
        "worker",
        "serve",
    }


def test_compose_refuses_to_start_without_the_credentials_file():
    result = compose("config", "--quiet", env_file=False)
    assert result.returncode != 0
    assert "required variable" in result.stderr and "infra/stack.env" in result.stderr


def test_compose_matches_the_compose_spec_schema():
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_env_file_defines_every_variable_compose_reads():
    result = compose("config", "--variables", "--format", "json")
    assert result.returncode == 0, result.stderr
    variables = json.loads(result.stdout)
    # A variable with no default would silently become "" (compose only warns) unless the example
    # file names it; one whose empty value means "off" (DETECTOR_API_TOKEN) is named there blank.
    lines = [line.strip() for line in EXAMPLE_ENV.read_text().splitlines()]
    named = {line.partition("=")[0] for line in lines if "=" in line and not line.startswith("#")}
    undefined = [name for name, spec in variables.items() if not spec["DefaultValue"] and name not in named]
    assert not undefined
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "PREFECT_AUTH_STRING"} <= set(variables)


def test_no_credential_is_written_in_the_compose_file():
    text = COMPOSE_FILE.read_text()
    for value in read_env_file(EXAMPLE_ENV).values():
        if "change-me" in value:
            assert value not in text


def test_real_credentials_file_is_git_ignored():
    result = subprocess.run(["git", "check-ignore", "-q", "infra/stack.env"], cwd=REPO)
    assert result.returncode == 0


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart(stack: dict):
    for name, service in stack["services"].items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", name
        else:
            assert service["healthcheck"]["test"], name


def test_services_wait_for_healthy_or_finished_dependencies(stack: dict):
    for name, service in stack["services"].items():
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            assert condition["condition"] == expected, (name, dependency)
    assert set(stack["services"]["worker"]["depends_on"]) == {"deploy", "mlflow-users"}
    assert set(stack["services"]["postgres"]["depends_on"]) == set(stack["services"]["minio"]["depends_on"]) == {"preflight"}
    assert set(stack["services"]["mlflow"]["depends_on"]) == {"postgres", "minio-init"}


def test_state_lives_in_named_volumes_and_ports_bind_to_loopback(stack: dict):
    for name, service in stack["services"].items():
        for volume in service.get("volumes", []):
            assert volume["type"] == "volume" and volume["source"] in stack["volumes"], (name, volume)
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
    assert {"postgres-data", "minio-data", "work"} <= set(stack["volumes"])


def test_mlflow_and_prefect_use_postgresql(stack: dict):
    mlflow_env = stack["services"]["mlflow"]["environment"]
    backend = mlflow_env["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql://mlflow:") and backend.endswith("@postgres:5432/mlflow")
    assert mlflow_env["MLFLOW_AUTH_DATABASE_URI"].startswith("postgresql://mlflow:")
    assert mlflow_env["MLFLOW_AUTH_DATABASE_URI"].endswith("@postgres:5432/mlflow_auth")
    assert mlflow_env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://detector-artifacts/mlflow"
    prefect_env = stack["services"]["prefect-server"]["environment"]
    assert prefect_env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://prefect:")
    databases = stack["configs"]["create-databases"]["content"]
    owners = {"mlflow": "mlflow", "mlflow_auth": "mlflow", "prefect": "prefect"}
    assert all(f"CREATE DATABASE {name} OWNER {owner};" in databases for name, owner in owners.items())


def test_mlflow_accepts_the_host_names_the_stack_uses(stack: dict):
    # MLflow's own Host-header check: the worker calls http://mlflow:5000, a browser the
    # published port; anything else is rejected (DNS rebinding).
    flags = [argument for argument in stack["services"]["mlflow"]["command"] if argument.startswith("--allowed-hosts=")]
    assert len(flags) == 1
    allowed = flags[0].removeprefix("--allowed-hosts=").split(",")
    assert is_allowed_host_header(allowed, "mlflow:5000")
    assert is_allowed_host_header(allowed, "localhost:5000")
    assert not is_allowed_host_header(allowed, "attacker.example:5000")


def test_worker_reaches_the_servers_by_service_name_with_credentials(stack: dict):
    env = stack["services"]["worker"]["environment"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["MLFLOW_TRACKING_USERNAME"] == read_env_file(EXAMPLE_ENV)["MLFLOW_PIPELINE_USERNAME"]
    assert env["MLFLOW_TRACKING_PASSWORD"] == read_env_file(EXAMPLE_ENV)["MLFLOW_PIPELINE_PASSWORD"]
    assert env["PREFECT_API_AUTH_STRING"] == stack["services"]["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert stack["services"]["worker"]["command"][:4] == ["worker", "start", "--pool", "detector-pool"]


def _secret_values(service: dict) -> set[str]:
    return {str(value) for value in service.get("environment", {}).values()}


def test_no_service_but_its_database_init_holds_the_postgres_superuser_password(stack: dict):
    superuser = read_env_file(EXAMPLE_ENV)["POSTGRES_PASSWORD"]
    holders = {name for name, service in stack["services"].items() if any(superuser in value for value in _secret_values(service))}
    assert holders == {"preflight", "postgres"}


def test_the_worker_holds_neither_the_mlflow_admin_password_nor_a_key_to_the_artifacts(stack: dict):
    example = read_env_file(EXAMPLE_ENV)
    worker = _secret_values(stack["services"]["worker"])
    for secret in ("MLFLOW_ADMIN_PASSWORD", "MLFLOW_S3_SECRET_KEY", "MINIO_ROOT_PASSWORD", "POSTGRES_PASSWORD"):
        assert example[secret] not in worker, secret
    assert stack["services"]["worker"]["environment"]["AWS_ACCESS_KEY_ID"] == example["PIPELINE_S3_ACCESS_KEY"]
    assert stack["services"]["worker"]["environment"]["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"


def test_each_s3_key_may_touch_only_its_own_bucket(stack: dict):
    pipeline = json.loads(stack["configs"]["pipeline-s3-policy"]["content"])
    server = json.loads(stack["configs"]["mlflow-s3-policy"]["content"])
    resources = lambda policy: {resource for statement in policy["Statement"] for resource in statement["Resource"]}  # noqa: E731
    actions = lambda policy: {action for statement in policy["Statement"] for action in statement["Action"]}  # noqa: E731
    assert resources(pipeline) == {"arn:aws:s3:::detector-data", "arn:aws:s3:::detector-data/*"}
    assert not any(action.startswith(("s3:Put", "s3:Delete")) for action in actions(pipeline))
    assert resources(server) == {"arn:aws:s3:::detector-artifacts", "arn:aws:s3:::detector-artifacts/mlflow/*"}


def _preflight(stack: dict, values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The preflight service's own script, run by a real shell with the environment compose gives it."""
    service = stack["services"]["preflight"]
    script = service["command"][0].replace("$$", "$")  # `config` keeps compose's escape; `up` removes it
    return subprocess.run(["/bin/sh", "-ec", script], env={"PATH": "/usr/bin:/bin", **values}, capture_output=True, text=True, timeout=30)


def test_preflight_refuses_the_example_secrets_naming_them(stack: dict):
    result = _preflight(stack, stack["services"]["preflight"]["environment"])
    assert result.returncode == 1
    assert "MLFLOW_ADMIN_PASSWORD" in result.stderr and "POSTGRES_PASSWORD" in result.stderr
    assert "change-me-mlflow-admin" not in result.stderr


def test_preflight_passes_real_secrets(stack: dict):
    replaced = {name: f"real{index}secret" for index, name in enumerate(stack["services"]["preflight"]["environment"])}
    assert _preflight(stack, replaced).returncode == 0


def test_preflight_checks_every_secret_the_example_file_sets(stack: dict):
    checked = set(stack["services"]["preflight"]["environment"])
    secrets = {name for name, value in read_env_file(EXAMPLE_ENV).items() if "change-me" in value}
    assert secrets <= checked, secrets - checked


@pytest.mark.parametrize("choice", ["gpu", "gpu-jax"])
def test_gpu_override_builds_the_worker_from_the_image_the_setting_names(choice: str):
    command = [compose_binary(), "--project-directory", str(INFRA_DIR), "-f", str(COMPOSE_FILE), "-f", str(INFRA_DIR / "compose.gpu.yaml")]
    command += ["--env-file", str(EXAMPLE_ENV), "config", "--format", "json"]
    environment = {"PATH": "/usr/bin:/bin", "DETECTOR_GPU_IMAGE": choice}
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment)
    assert result.returncode == 0, result.stderr
    worker = json.loads(result.stdout)["services"]["worker"]
    assert worker["image"] == f"detector-{choice}:0.1.0" and (REPO / worker["build"]["dockerfile"]).is_file()
    assert worker["build"]["dockerfile"] == f"docker/{choice}.Dockerfile" and worker["environment"]["DETECTOR_GPU_IMAGE"] == choice
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
