"""The product on real services: moto S3, `mlflow server` proxying artifacts to it, a Prefect
server, a process work pool and worker, all started by infra/local/services.sh on free ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from components.config import DEFAULT_REGISTERED_MODEL
from tests.conftest import free_port

pytestmark = [pytest.mark.services, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "local" / "services.sh"
MODEL = DEFAULT_REGISTERED_MODEL  # what the worker registers into: the stack has its own fresh store


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path):
    stack_dir = tmp_path_factory.mktemp("stack")
    env = _stack_env(stack_dir)
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        for line in (stack_dir / "env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
        _upload(tiny_dataset, env)
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)


def _stack_env(stack_dir: Path, **settings: str) -> dict[str, str]:
    """What services.sh reads: free ports, its own folder, this interpreter's venv; none of the
    caller's connection settings, so the stack and its clients meet only each other, nor the
    suite's MLflow server setting, so the script's own default is what runs."""
    caller = ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION")
    env = {key: value for key, value in os.environ.items() if key not in caller}
    ports = {name: str(free_port()) for name in ("S3_PORT", "MLFLOW_PORT", "PREFECT_PORT")}
    owner = {"STACK_OWNER_PID": str(os.getpid())}  # the stack dies with this test run, however it ends
    return {**env, **ports, **owner, "STACK_DIR": str(stack_dir), "BIN": str(Path(sys.executable).parent), **settings}


def _upload(root: Path, env: dict[str, str]) -> None:
    code = (
        "import sys; from pathlib import Path; from components.data.s3data import s3_client\n"
        "client = s3_client(); client.create_bucket(Bucket='detector-data'); root = Path(sys.argv[1])\n"
        "[client.upload_file(str(p), 'detector-data', 'tiny/' + str(p.relative_to(root))) for p in root.rglob('*.png')]"
    )
    subprocess.run([sys.executable, "-c", code, str(root)], env=env, check=True, cwd=REPO)


def _prefect(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args], cwd=REPO, env={**env, "COLUMNS": "250"}, capture_output=True, text=True, timeout=timeout
    )


def _run(env: dict[str, str], work_dir: Path, deployment: str = "train-improved", **changes: dict) -> subprocess.CompletedProcess:
    overrides = {
        "data": {"root": "s3://detector-data/tiny", "image_size": 32, "images_per_shard": 16},
        "variant": {"fit": {"epochs": 1, "batch_size": 16}},
        "work_dir": str(work_dir),
        **changes,
    }
    return _prefect(
        env,
        "deployment",
        "run",
        f"detector-pipeline/{deployment}",
        "--watch",
        "--watch-timeout",
        "540",
        "-p",
        "profile=demo",
        "-p",
        f"overrides={json.dumps(overrides)}",
    )


def _client(env: dict[str, str]) -> MlflowClient:
    return MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="module")
def deployed_run(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    """`prefect deploy --all`, then one `prefect deployment run … --watch` of train-improved with
    each stage as its own deployment run (the CPU and GPU stage deployments), as a cluster runs it."""
    deployed = _prefect(stack, "--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "0 3 * * 1" in _prefect(stack, "deployment", "inspect", "detector-pipeline/train-improved").stdout
    finished = _run(stack, tmp_path_factory.mktemp("deployed") / "work", execution={"stages": "deployments"})
    assert finished.returncode == 0 and "Completed" in finished.stdout, finished.stdout[-3000:] + finished.stderr[-3000:]
    return finished


def test_deployment_run_trains_logs_to_the_server_and_registers(stack, deployed_run):
    client = _client(stack)
    [run] = client.search_runs([client.get_experiment_by_name("detector-tiny").experiment_id], "tags.variant = 'improved'")
    assert run.data.params["model.trainable_backbone_layers"] == "15" and "test/auc" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 1
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.run_id == run.info.run_id

    list_keys = (
        "from components.data.s3data import s3_client; pages = s3_client().get_paginator('list_objects_v2')"
        ".paginate(Bucket='detector-artifacts'); print('\\n'.join(o['Key'] for p in pages for o in p.get('Contents', [])))"
    )
    listing = subprocess.run([sys.executable, "-c", list_keys], env=stack, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert f"{run.info.run_id}/artifacts/plots/learning_curves.png" in listing and "MLmodel" in listing


def test_each_stage_ran_as_its_own_deployment_run_in_its_image(stack, deployed_run):
    list_stage_runs = (
        "import json; from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import FlowFilter, FlowFilterName\n"
        "with get_client(sync_client=True) as client:\n"
        "    names = {client.read_deployment_by_name(f'detector-stage/{i}').id: i for i in ('cpu', 'gpu')}\n"
        "    runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=['detector-stage'])))\n"
        "    print(json.dumps(sorted([r.parameters['stage'], names[r.deployment_id], r.state_type.value] for r in runs)))"
    )
    listing = subprocess.run([sys.executable, "-c", list_stage_runs], env=stack, cwd=REPO, capture_output=True, text=True, check=True)
    stage_runs = json.loads(listing.stdout.strip().splitlines()[-1])
    expected = [
        [stage, "gpu" if stage == "train" else "cpu", "COMPLETED"]
        for stage in ("sync", "validate", "shard", "train", "evaluate", "register")
    ]
    assert stage_runs == sorted(expected)


def test_second_run_on_unchanged_data_skips_training(stack, deployed_run, tmp_path: Path):
    client = _client(stack)
    before = len(client.search_model_versions(f"name='{MODEL}'"))
    experiment = client.get_experiment_by_name("detector-tiny").experiment_id
    runs_before = len(client.search_runs([experiment]))
    finished = _run(stack, tmp_path / "fresh-worker-cache")  # stages in-process this time: the default
    assert finished.returncode == 0, finished.stdout[-3000:]
    assert len(client.search_model_versions(f"name='{MODEL}'")) == before >= 1
    assert len(client.search_runs([experiment])) == runs_before
    assert not (tmp_path / "fresh-worker-cache" / "runs").exists()


def test_score_folder_deployment_scores_s3_images_and_logs_its_drift_report(stack, deployed_run, tmp_path: Path):
    """The scheduled scoring path, run once by hand: @champion on an s3:// prefix, through the worker."""
    scored = _prefect(
        stack,
        "deployment",
        "run",
        "detector-score/score-folder",
        "--watch",
        "--watch-timeout",
        "300",
        "-p",
        "images=s3://detector-data/tiny/test",
        "-p",
        f"work_dir={tmp_path / 'work'}",
    )
    assert scored.returncode == 0 and "Completed" in scored.stdout, scored.stdout[-3000:] + scored.stderr[-3000:]
    rows = (tmp_path / "work" / "scores" / "scores.csv").read_text().splitlines()
    assert rows[0].startswith("path,sha256,p_ai_generated,verdict,model_version") and len(rows) > 2
    client = _client(stack)
    [run] = client.search_runs([client.get_experiment_by_name("detector-scoring").experiment_id])
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"scores.csv", "drift.html", "summary.json", "score_histogram.png"} <= artifacts
    assert run.data.params["images"] == "s3://detector-data/tiny/test" and "drift/psi/p_ai_generated" in run.data.metrics


def test_mlflow_on_postgresql_keeps_runs_and_versions_in_the_database(tmp_path: Path):
    import psycopg2

    pg_port = free_port()
    env = _stack_env(tmp_path / "stack", PG_PORT=str(pg_port), MLFLOW_BACKEND="postgresql")
    try:
        started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{env['MLFLOW_PORT']}")
        run = client.create_run(client.create_experiment("on-postgres"))
        client.log_metric(run.info.run_id, "val_auc", 0.75)
        client.create_registered_model("pg-model")
        client.create_model_version("pg-model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)

        with psycopg2.connect(host="127.0.0.1", port=pg_port, user="mlflow", dbname="mlflow") as connection, connection.cursor() as cursor:
            cursor.execute("SELECT run_uuid FROM runs")
            assert [row[0] for row in cursor.fetchall()] == [run.info.run_id]
            cursor.execute("SELECT name, version FROM model_versions")
            assert cursor.fetchall() == [("pg-model", 1)]
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
    with pytest.raises(psycopg2.OperationalError):  # `stop` ends PostgreSQL too
        psycopg2.connect(host="127.0.0.1", port=pg_port, user="mlflow", dbname="mlflow", connect_timeout=5)


def test_the_env_file_holding_the_s3_secret_is_readable_by_its_owner_only(stack: dict[str, str]):
    assert (Path(stack["STACK_DIR"]) / "env").stat().st_mode & 0o777 == 0o600


def test_mlflow_runs_without_the_job_runners_the_detector_never_uses(stack: dict[str, str]):
    from infra.local.reaper import remember_descendants

    children: dict[int, int] = {}
    remember_descendants(int((Path(stack["STACK_DIR"]) / "pids" / "mlflow.pid").read_text()), children)
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children]
    assert commands, "the server's uvicorn worker"
    assert not [line for line in commands if b"huey" in line or b"_job_runner" in line], commands
