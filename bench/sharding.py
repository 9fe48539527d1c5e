"""Sharding rate on one core and on all of them: the same images, the same config."""

from __future__ import annotations

import os
from pathlib import Path

from bench.data import shard_folder


def measure(source: Path, work_dir: Path, data: dict) -> dict[str, float]:
    cores = os.cpu_count() or 1
    rates = {}
    for workers in (1, cores):
        _, images, seconds = shard_folder(source, work_dir / f"workers-{workers}", data, workers=workers)
        rates[workers] = images / seconds
    return {
        "images_per_second_1_core": rates[1],
        "images_per_second_all_cores": rates[cores],
        "cores": cores,
        "scaling": rates[cores] / rates[1],
    }
