"""Orchestration overhead: one pipeline (validate → shard → train → evaluate → register) through
the Prefect flow with MLflow logging, against the same components called directly.

Runs in its own process (`python -m bench.orchestration DIR EPOCHS`, one JSON line out) with its
own Prefect home and MLflow sqlite store, both set before Prefect is imported. Prefect's
ephemeral API starts before either timing (a no-op flow) and is reported on its own line:
it is paid once per process, not per pipeline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEMO_DATA = {"train_per_class": 80, "test_per_class": 20, "image_size": 64}


def measure(work_dir: Path, epochs: int) -> dict[str, float]:
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work_dir / 'mlflow.db'}",
        "PREFECT_HOME": str(work_dir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "bench.orchestration", str(work_dir), str(epochs)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def _overrides(root: str, work_dir: Path, name: str, epochs: int) -> dict[str, Any]:
    return {
        "data": {"root": root},
        "work_dir": str(work_dir / name),
        "variant": {"fit": {"epochs": epochs}},
        "tracking": {"experiment": f"bench-{name}", "registered_model": f"bench-{name}"},
    }


def _direct(overrides: dict[str, Any]) -> None:
    """The flow's stages, wired as the flow wires them (components/wiring.py), without Prefect."""
    from components.config import build_config
    from components.data import shard, validate
    from components.evaluation import evaluate
    from components.registry import register
    from components.training import train
    from components.wiring import stage_config

    cfg = build_config("improved", "demo", overrides)
    validated = validate.run(stage_config("validate", cfg))
    sharded = shard.run(stage_config("shard", cfg, validated=validated))
    trained = train.run(stage_config("train", cfg, sharded=sharded))
    evaluated = evaluate.run(stage_config("evaluate", cfg, sharded=sharded, trained=trained))
    register.run(stage_config("register", cfg, sharded=sharded, trained=trained, evaluated=evaluated))


def _compare(work_dir: Path, epochs: int) -> dict[str, float]:
    from prefect import flow

    from components.data import demo_data, shard, validate  # noqa: F401 - imports outside the timings
    from components.evaluation import evaluate  # noqa: F401
    from components.registry import register  # noqa: F401
    from components.training import train  # noqa: F401
    from flows.pipeline import train_pipeline

    root = demo_data.run(demo_data.DemoDataConfig(out_dir=str(work_dir / "demo-data"), **DEMO_DATA)).root

    @flow(name="bench-warm-up")
    def warm_up() -> None:
        return None

    start = time.perf_counter()
    warm_up()
    startup = time.perf_counter() - start
    start = time.perf_counter()
    _direct(_overrides(root, work_dir, "direct", epochs))
    direct = time.perf_counter() - start
    start = time.perf_counter()
    train_pipeline("improved", "demo", _overrides(root, work_dir, "flow", epochs), force=True)
    flow_seconds = time.perf_counter() - start
    return {
        "direct_seconds": direct,
        "flow_seconds": flow_seconds,
        "prefect_startup_seconds": startup,
        "orchestration_overhead": flow_seconds / direct,
    }


if __name__ == "__main__":
    print(json.dumps(_compare(Path(sys.argv[1]), int(sys.argv[2]))))
