"""Start several CLI runs that begin their real work at one instant, for the race tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Imports first (seconds), then wait for the start file, so the runs meet in their critical section.
LAUNCH = """
import importlib, os, sys, time
module = importlib.import_module(sys.argv[1])
start = sys.argv[2]
while not os.path.exists(start):
    time.sleep(0.02)
module.main(sys.argv[3:])
"""


def race(module: str, argument_lists: list[list[str]], folder: Path, env: dict[str, str] | None = None, timeout: float = 240):
    """Run `python -m module` once per argument list, all released together; (returncode, stdout, stderr) each."""
    start = folder / "start"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", LAUNCH, module, str(start), *arguments],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arguments in argument_lists
    ]
    _wait_for_imports(processes)
    start.touch()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        results.append((process.returncode, out, err))
    return results


def _wait_for_imports(processes: list[subprocess.Popen]) -> None:
    """Every child is past its imports when it polls: its CPU time stops growing. Releasing
    before that only shortens the overlap, so a bounded wait suffices for correctness."""
    deadline = time.monotonic() + 60
    previous = None
    while time.monotonic() < deadline:
        now = [_cpu_ticks(process.pid) for process in processes]
        if previous and all(0 <= after - before <= 2 for before, after in zip(previous, now)):
            return
        previous = now
        time.sleep(0.5)


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return -1
