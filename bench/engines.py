"""Validate and shard on the Ray engine against the local process pool: the same images, the same
config, all of this host's cores. The Ray cluster is started once, before both timings, and its
start reported on its own: a KubeRay cluster is already running when the stages come to it."""

from __future__ import annotations

import os
import time
from pathlib import Path


def measure(source: Path, work_dir: Path, data: dict) -> dict[str, float]:
    from components.config import DataConfig
    from components.data import engine, shard, validate

    cores = os.cpu_count() or 1
    data_cfg = DataConfig(root=str(source), **data)
    files = sum(1 for path in source.rglob("*") if path.is_file())
    start = time.perf_counter()
    with engine.ray_cluster(cores):
        results: dict[str, float] = {"ray_cluster_start_seconds": time.perf_counter() - start, "files": files}
        for name in ("local", "ray"):
            folder = str(work_dir / name)
            start = time.perf_counter()
            validated = validate.run(validate.ValidateConfig(data=data_cfg, work_dir=folder, engine=name))
            results[f"validate_{name}"] = files / (time.perf_counter() - start)
            cfg = shard.ShardConfig(
                data=data_cfg,
                report_path=validated.report_path,
                dataset_fingerprint=validated.dataset_fingerprint,
                work_dir=folder,
                engine=name,
            )
            start = time.perf_counter()
            written = sum(shard.run(cfg).counts.values())
            results[f"shard_{name}"] = written / (time.perf_counter() - start)
    return results
