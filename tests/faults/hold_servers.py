"""Not collected (no test_ prefix): the runner that test_servers_die_with_runner.py starts and
SIGKILLs. It starts servers the two ways tests do, writes its pid file, and waits to be killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port, wait_for_http


def test_hold_servers_until_killed(s3_endpoint, tmp_path):
    # The way test_tracking_outage starts mlflow: its own session, a uvicorn worker child.
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts-destination", str(tmp_path / "artifacts")]
    with open(tmp_path / "mlflow.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_http(f"http://127.0.0.1:{port}/health", server, timeout=180)
    Path(os.environ["HOLD_READY_FILE"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # held until the test SIGKILLs this runner
        time.sleep(1)
    raise AssertionError("hold_servers ran 600 s without being killed")
