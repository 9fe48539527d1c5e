"""`python -m bench` (`make bench`): every figure in bench/README.md, measured in one run.

Prints a table and writes bench/results.json. Heavy imports stay inside main(): the sharder's
worker processes re-import this module, and they need none of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOURCE_IMAGES = 1000  # the scale: 1,000 JPEGs of 256 px
POLICY = {"rotation_degrees": 20.0, "shift_fraction": 0.2, "horizontal_flip": True}  # the improved variant's
INPUT_DATA = {"image_size": 224, "encoding": "jpeg", "images_per_shard": 256}
TRAIN_DATA = {"image_size": 64, "encoding": "jpeg", "images_per_shard": 256}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--out", default="bench/results.json", help="Where the JSON goes (default: %(default)s).")
    parser.add_argument("--train-steps", type=int, default=8, help="Measured training steps per feed (default: %(default)s).")
    parser.add_argument("--flow-epochs", type=int, default=3, help="Epochs of the orchestration run (default: %(default)s).")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from bench import engines, growth, orchestration, report, serving, sharding, training
    from bench import input as input_bench
    from bench.data import make_dataset_folder, shard_folder

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="detector-bench-") as scratch:
        work = Path(scratch)
        source = make_dataset_folder(work / "source", SOURCE_IMAGES, 40)
        results: dict = {"machine": report.machine()}
        section(results, "sharding", lambda: sharding.measure(source, work / "sharding", INPUT_DATA))
        section(results, "engines", lambda: engines.measure(source, work / "engines", INPUT_DATA))
        live, _, _ = shard_folder(source, work / "shards", INPUT_DATA, POLICY)
        premade, _, _ = shard_folder(source, work / "shards", {**INPUT_DATA, "premade_copies": 1}, POLICY)
        section(results, "input", lambda: input_bench.measure(source / "train", live, premade, POLICY))
        small, _, _ = shard_folder(source, work / "shards", TRAIN_DATA, POLICY)
        section(results, "training", lambda: training.measure(small, args.train_steps))
        section(results, "orchestration", lambda: orchestration.measure(work / "orchestration", args.flow_epochs))
        section(results, "serving", lambda: serving.measure(work / "orchestration"))
        section(results, "growth", lambda: growth.measure(work / "growth"))
    results.update(report.ratios(results))
    results["targets"] = {key: f"{direction} {target}" for key, target, direction in report.TARGETS}
    results["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    results["wall_seconds"] = time.perf_counter() - started
    print(report.table(results))
    print(f"\nwall time {results['wall_seconds']:.0f} s; written to {args.out}")
    report.write(results, Path(args.out))


def section(results: dict, name: str, measure: Callable[[], Any]) -> None:
    """Run one section and show its figures as soon as they exist (the table comes at the end)."""
    start = time.perf_counter()
    results[name] = measure()
    print(f"[{name}, {time.perf_counter() - start:.0f} s] {json.dumps(results[name])}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
