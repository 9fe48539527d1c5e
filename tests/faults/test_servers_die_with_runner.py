"""A test run SIGKILLed mid-way (CI timeout, a second Ctrl-C) takes its servers with it: moto
started through conftest's start_server, and an `mlflow server` with its worker started in its
own session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from infra.local.reaper import processes, remember_descendants

REPO = Path(__file__).resolve().parents[2]


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} within {timeout:.0f} s")


def test_sigkill_of_the_runner_ends_every_server_it_started(tmp_path):
    ready = tmp_path / "ready"
    runner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "tests/faults/hold_servers.py", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t")],
        cwd=REPO,
        env={**os.environ, "HOLD_READY_FILE": str(ready)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(ready.exists, 240, "the held runner's servers did not come up")
        started: dict[int, int] = {}
        remember_descendants(runner.pid, started)
        commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in started}
        assert any(b"moto.server" in line for line in commands.values()) and sum(b"mlflow" in line for line in commands.values()) >= 2
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)

        def all_gone() -> bool:
            table = processes()
            return not [pid for pid, start in started.items() if table.get(pid, (0, -1))[1] == start]

        _wait(all_gone, 60, f"servers still alive after the runner was killed: {commands}")
    finally:
        if runner.poll() is None:
            runner.kill()
