"""kill -9 at random points of validate, then rerun: the final state equals a clean run's."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from components.config import DataConfig
from components.data.validate import PROGRESS_NAME, ValidateConfig, run

PER_CLASS = 40
SEED = 20261127


def _dataset(root: Path) -> Path:
    rng = np.random.default_rng(SEED)
    for split in ("train", "test"):
        for name in ("FAKE", "REAL"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(PER_CLASS):
                Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / f"{index:03d}.png")
            (folder / "zero.png").write_bytes(b"")
            (folder / "page.jpg").write_bytes(b"<html>")
            broken = io.BytesIO()
            Image.new("RGB", (4, 4)).save(broken, format="PNG", exif=b"not a tiff block")
            (folder / "exif.png").write_bytes(broken.getvalue())
    (root / "train" / "REAL" / "copy.png").write_bytes((root / "train" / "REAL" / "000.png").read_bytes())
    return root


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry's bytes, size, mode and modification time."""
    state = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        state[str(path.relative_to(folder))] = (digest, info.st_size, info.st_mode, info.st_mtime_ns)
    return state


def _finished_files(path: Path) -> int:
    """Files the progress file records; a line a kill cut short is not one."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if _parses(line))


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _start_and_kill(root: Path, work_dir: Path, progress: Path, kill_after: int) -> int:
    """Start validate as its own process group; SIGKILL the whole group (the OOM killer, a
    node going away) once kill_after files are done. Returns the process's exit status."""
    command = [
        sys.executable,
        "-m",
        "components.data.validate",
        "--set",
        f"data.root={root}",
        "--set",
        f"work_dir={work_dir}",
        "--set",
        "workers=2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and _lines(progress) < kill_after and time.monotonic() < deadline:
        time.sleep(0.002)  # polling the progress file, not waiting for a result
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def test_kill_9_at_random_points_then_rerun_gives_the_clean_report(tmp_path: Path):
    root = _dataset(tmp_path / "data")
    total = sum(1 for path in root.rglob("*") if path.is_file())
    sources = _snapshot(root)
    clean = run(ValidateConfig(data=DataConfig(root=str(root)), work_dir=str(tmp_path / "clean"), workers=2))

    work_dir = tmp_path / "killed"
    progress = work_dir / "validated" / Path(clean.report_path).parent.name / PROGRESS_NAME
    rng = random.Random(SEED)
    kill_points = sorted(rng.sample(range(1, total // 2), 2))
    statuses = [_start_and_kill(root, work_dir, progress, point) for point in kill_points]
    assert -signal.SIGKILL in statuses, "at least one run must have been killed"
    # Where exactly a kill lands (starting up, decoding, quarantining) varies with the host's
    # load; the rerun must pick up from there, wherever it is.
    done_before_rerun = _finished_files(progress)

    left = total - done_before_rerun if progress.exists() else 0  # 0: the last run finished before its kill
    rerun = run(ValidateConfig(data=DataConfig(root=str(root)), work_dir=str(work_dir), workers=2))
    assert rerun.inspected == left, "the rerun continues where the killed run stopped"
    assert Path(rerun.report_path).read_bytes() == Path(clean.report_path).read_bytes()
    assert rerun.dataset_fingerprint == clean.dataset_fingerprint and rerun.statuses == clean.statuses
    copied, expected = _snapshot(Path(rerun.quarantine_dir)), _snapshot(Path(clean.quarantine_dir))
    assert {name: facts[:2] for name, facts in copied.items()} == {name: facts[:2] for name, facts in expected.items()}
    assert not progress.exists(), "a finished run leaves no progress file"
    assert _snapshot(root) == sources, "sources are never modified"
