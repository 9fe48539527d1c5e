"""bench/gpu_check.sh's Python entry point, on this CPU under JAX with TensorFlow hidden, as on the
GPU hosts (JAX, no TensorFlow), at a tiny size: a renamed import or a changed contract fails here,
not on the first GPU the project is lent."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SIZE = 32


def _cifake_like(root: Path) -> Path:
    """The layout bench/gpu_carry.py reads from ../shared/data/cifake-dev: {train,test}/{FAKE,REAL}/*.jpg."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 20), ("test", 6)):
        for class_name in ("FAKE", "REAL"):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(folder / f"{index}.jpg")
    return root


def _without_tensorflow(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tests.model.without_tensorflow", module, *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_gpu_check_runs_every_section_under_jax_without_tensorflow(tmp_path: Path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "GPU_CHECK_BATCH": "4", "PYTHONPATH": str(REPO)}
    carry = tmp_path / "carry"
    made = _without_tensorflow(
        "bench.gpu_carry",
        "--out",
        str(carry),
        "--photos",
        "16",
        "--photo-size",
        str(SIZE),
        "--cifake",
        str(_cifake_like(tmp_path / "cifake")),
        env=env,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    # The manifest gpu_check.sh looks for before it starts is the one gpu_carry writes.
    wanted = re.search(r"-f bench/carry/(\S+/manifest\.json)", (REPO / "bench" / "gpu_check.sh").read_text()).group(1)
    assert (carry / wanted).is_file()

    results = tmp_path / "gpu_results.json"
    checked = _without_tensorflow(
        "bench.gpu_check", "--carry", str(carry), "--steps", "2", "--epochs", "2", "--cifake-epochs", "1", "--out", str(results), env=env
    )
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]
    figures = json.loads(results.read_text())
    assert figures["backend"] == "jax"
    assert sorted(figures["in_memory"]) == sorted(f"{v}, {p}" for v in ("baseline", "improved") for p in ("mixed_bfloat16", "float32"))
    rates = [*figures["in_memory"].values(), figures["end_to_end_improved"], *figures["input_images_per_second"].values()]
    assert all(math.isfinite(rate) and rate > 0 for rate in rates), rates
    assert 0.0 <= figures["cifake"]["test_auc"] <= 1.0


def test_gpu_check_script_parses_with_its_two_process_case():
    """No GPU host runs it here: bash -n at least catches a broken edit of the two-process case."""
    script = REPO / "bench" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True).returncode == 0
    assert "JAX_COORDINATOR_ADDRESS" in script.read_text() and "CUDA_VISIBLE_DEVICES" in script.read_text()
