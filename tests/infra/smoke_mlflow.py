"""Start the MLflow image's entrypoint (docker/mlflow-entrypoint.sh) outside docker and check
what the stack relies on: /health answers without credentials, the API demands them, the
admin from the environment gets in, and an unlisted Host header is refused. Then
docker/mlflow-users.py (run twice: it must be idempotent) creates the pipeline's user, which
can create and manage its own experiments and registered models but not users, and cannot
change what the admin owns.

Runs with the MLflow image's requirement set on PATH (tests/infra/check_images.sh), on sqlite
stores and a local artifact folder in place of PostgreSQL and S3. Standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "mlflow-entrypoint.sh"
USERS_SCRIPT = ENTRYPOINT.with_name("mlflow-users.py")
ADMIN_PASSWORD = "smoke-test-admin-password"
PIPELINE_USER, PIPELINE_PASSWORD = "detector-pipeline", "smoke-test-pipeline-password"
STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status(url: str, headers: dict[str, str] | None = None, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={**(headers or {}), **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def wait_for_health(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"mlflow-entrypoint exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if status(f"{url}/health") == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"MLflow did not answer {url}/health within {STARTUP_SECONDS} s")


def check(url: str) -> list[str]:
    api = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    admin = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    wrong = "Basic " + base64.b64encode(b"admin:wrong-password").decode()
    expectations = [
        ("health without credentials", status(f"{url}/health"), 200),
        ("API without credentials", status(api), 401),
        ("API with a wrong password", status(api, {"Authorization": wrong}), 401),
        ("API as the admin", status(api, {"Authorization": admin}), 200),
        ("API under an unlisted Host", status(api, {"Authorization": admin, "Host": "attacker.example"}), 403),
    ]
    return [f"{name}: HTTP {got}, expected {want}" for name, got, want in expectations if got != want]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def check_pipeline_user(url: str) -> list[str]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_PIPELINE_USERNAME": PIPELINE_USER,
        "MLFLOW_PIPELINE_PASSWORD": PIPELINE_PASSWORD,
    }
    for attempt in (1, 2):
        created = subprocess.run([sys.executable, str(USERS_SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
        if created.returncode != 0:
            return [f"mlflow-users.py run {attempt} failed: {created.stderr[-1500:]}"]
    api, admin, pipeline = f"{url}/api/2.0/mlflow", basic("admin", ADMIN_PASSWORD), basic(PIPELINE_USER, PIPELINE_PASSWORD)
    status(f"{api}/registered-models/create", admin, {"name": "owned-by-admin"})
    expectations = [
        ("pipeline creates an experiment", status(f"{api}/experiments/create", pipeline, {"name": "pipeline-experiment"}), 200),
        ("pipeline creates a registered model", status(f"{api}/registered-models/create", pipeline, {"name": "pipeline-model"}), 200),
        (
            "pipeline tags its own model",
            status(f"{api}/registered-models/set-tag", pipeline, {"name": "pipeline-model", "key": "k", "value": "v"}),
            200,
        ),
        ("pipeline creates a user", status(f"{api}/users/create", pipeline, {"username": "intruder", "password": "intruder-pw"}), 403),
        ("pipeline deletes the admin's model", status(f"{api}/registered-models/delete", pipeline, {"name": "owned-by-admin"}), 403),
    ]
    return [f"{name}: HTTP {got}, expected {want}" for name, got, want in expectations if got != want]


def main() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{scratch}/mlflow.db",
            "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{scratch}/auth.db",
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "smoke-test-csrf-key",
            "MLFLOW_ARTIFACTS_DESTINATION": f"{scratch}/artifacts",
        }
        command = ["sh", str(ENTRYPOINT), "--host=127.0.0.1", f"--port={port}", "--workers=1", "--allowed-hosts=mlflow:*,127.0.0.1:*"]
        log = Path(scratch) / "server.log"
        with log.open("w") as output:
            server = subprocess.Popen(command, env=env, start_new_session=True, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_for_health(url, server, log)
            failures = check(url) or check_pipeline_user(url)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(timeout=60)
                except subprocess.TimeoutExpired:  # a loaded host can outlast a clean shutdown
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait(timeout=30)
    if failures:
        raise SystemExit("MLflow image smoke test failed:\n  " + "\n  ".join(failures))
    print(f"mlflow-entrypoint: basic auth, /health and allowed hosts behave on port {port}")


if __name__ == "__main__":
    sys.exit(main())
