"""`detector kfp submit` through the real kfp client, against a loopback HTTP server that answers
KFP's v2beta1 REST paths and records what it was sent. No Kubeflow API server runs here; this
checks our calls (upload, run, weekly recurring run, resubmission), not KFP's behaviour."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.kfp.conftest import detector

API = "/apis/v2beta1"


class KfpStandIn(BaseHTTPRequestHandler):
    state: dict

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def _answer(self, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _record(self) -> tuple[str, bytes]:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlparse(self.path).path
        self.state["requests"].append((self.command, path, body))
        return path, body

    def do_GET(self) -> None:
        path, _ = self._record()
        state = self.state
        if path == f"{API}/healthz":
            self._answer({"multi_user": False})
        elif path == f"{API}/pipelines":
            self._answer({"pipelines": state["pipelines"], "total_size": len(state["pipelines"])})
        elif path.startswith(f"{API}/pipelines/") and path.endswith("/versions"):
            self._answer({"pipeline_versions": [{"pipeline_id": "p1", "pipeline_version_id": state["versions"][-1]}], "total_size": 1})
        elif path == f"{API}/experiments":
            self._answer({"experiments": state["experiments"], "total_size": len(state["experiments"])})
        elif path == f"{API}/recurringruns":
            self._answer({"recurringRuns": state["recurring"], "total_size": len(state["recurring"])})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        path, body = self._record()
        state = self.state
        if path == f"{API}/pipelines/upload":
            state["pipelines"].append({"pipeline_id": "p1", "display_name": "detector-pipeline"})
            state["versions"].append("v1")
            self._answer(state["pipelines"][0])
        elif path == f"{API}/pipelines/upload_version":
            state["versions"].append(f"v{len(state['versions']) + 1}")
            self._answer({"pipeline_id": "p1", "pipeline_version_id": state["versions"][-1]})
        elif path == f"{API}/experiments":
            state["experiments"].append({"experiment_id": "e1", "display_name": json.loads(body)["display_name"]})
            self._answer(state["experiments"][0])
        elif path == f"{API}/runs":
            self._answer({"run_id": f"r{len(state['requests'])}"})
        elif path == f"{API}/recurringruns":
            created = {**json.loads(body), "recurring_run_id": f"rr{len(state['requests'])}"}
            state["recurring"].append(created)
            self._answer(created)
        else:
            self.send_error(404)

    def do_DELETE(self) -> None:
        path, _ = self._record()
        state = self.state
        state["recurring"] = [item for item in state["recurring"] if not path.endswith("/" + item["recurring_run_id"])]
        self._answer({})


@pytest.fixture
def kfp_api():
    state = {"requests": [], "pipelines": [], "versions": [], "experiments": [], "recurring": []}
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (KfpStandIn,), {"state": state}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def _submit(host: str, tmp_path: Path) -> dict:
    env = {**os.environ, "HOME": str(tmp_path)}  # kfp keeps a context file under ~/.config
    args = ["--host", host, "--data", "s3://detector-data/cifake", "--registry", "registry.example.com/ml"]
    args += ["--output", str(tmp_path / "p.yaml")]
    done = detector("kfp", "submit", *args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.rindex("\n{") :])


def _posted(state: dict, path: str) -> list[dict]:
    return [json.loads(body) for method, request_path, body in state["requests"] if method == "POST" and request_path == f"{API}/{path}"]


def test_submit_uploads_runs_and_schedules_the_weekly_retrain(kfp_api, tmp_path: Path, kfp_python: str):
    host, state = kfp_api
    outcome = _submit(host, tmp_path)
    assert (outcome["pipeline_id"], outcome["version_id"], outcome["cron"]) == ("p1", "v1", "0 0 3 * * 1")
    assert "registry.example.com/ml/detector-gpu:0.1.0" in (tmp_path / "p.yaml").read_text()
    (run,) = _posted(state, "runs")
    assert run["pipeline_version_reference"] == {"pipeline_id": "p1", "pipeline_version_id": "v1"}
    assert run["runtime_config"]["parameters"] == {"profile": "full", "data_root": "s3://detector-data/cifake", "overrides": "{}"}
    (recurring,) = _posted(state, "recurringruns")
    assert recurring["display_name"] == "detector-weekly-retrain" and recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert recurring["pipeline_version_reference"]["pipeline_version_id"] == "v1" and recurring["no_catchup"] is True


def test_resubmitting_adds_a_version_and_moves_the_one_schedule_onto_it(kfp_api, tmp_path: Path, kfp_python: str):
    host, state = kfp_api
    first = _submit(host, tmp_path)
    second = _submit(host, tmp_path)
    assert second["version_id"] == "v2" and any(path == f"{API}/pipelines/upload_version" for _, path, _ in state["requests"])
    assert [item["recurring_run_id"] for item in state["recurring"]] == [second["recurring_run_id"]] != [first["recurring_run_id"]]
    assert state["recurring"][0]["pipeline_version_reference"]["pipeline_version_id"] == "v2"
