"""kill -9 of a shard run at a seeded random point of its writing, then a rerun: the published
set equals a clean run's, nothing half-written is left, and the sources are untouched."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from components.data import publish, shard
from tests.faults.sharding import SEED, config_file, published_state, shard_config, tree_digest

REPO = Path(__file__).resolve().parents[2]


def _files_written(shards: Path) -> int:
    return sum(1 for staging in shards.glob("*.partial") for _ in staging.iterdir()) if shards.is_dir() else 0


def test_rerun_after_kill_9_equals_a_clean_run(tiny_data_config, tiny_dataset, tmp_path):
    before = tree_digest(tiny_dataset)
    cfg = shard_config(tiny_data_config, tmp_path / "work")
    clean = shard.run(cfg.model_copy(update={"work_dir": str(tmp_path / "clean")}))
    total = len(published_state(clean.manifest_path)["files"]) - 1  # the shards and the manifest
    kill_after = random.Random(SEED).randint(0, total - 1)  # files created in staging; the last one is still open
    victim = subprocess.Popen([sys.executable, "-m", "components.data.shard", "--config", str(config_file(cfg, tmp_path))], cwd=REPO)
    shards = tmp_path / "work" / "shards"
    deadline = time.monotonic() + 240
    while _files_written(shards) <= kill_after and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, f"the run ended before its kill point (FAULT_SEED={SEED}, after {kill_after} files)"
    assert not (shards / clean.shard_key / "manifest.json").exists(), "nothing is published before the run completes"
    rerun = shard.run(cfg)
    assert not rerun.reused and published_state(rerun.manifest_path) == published_state(clean.manifest_path)
    publish.verify(Path(rerun.manifest_path).parent)
    assert not list(shards.glob("*.partial")), "the rerun cleared the killed run's staging"
    assert tree_digest(tiny_dataset) == before
