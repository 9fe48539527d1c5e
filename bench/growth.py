"""Growth: validate + shard + one epoch of the training reader at 1×, 4× and 16× the data.

Each size runs in its own process, so its peak resident memory is its own. Run as
`python -m bench.growth DIR IMAGES`; it prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

BASE_IMAGES = 250
SCALES = (1, 4, 16)
DATA = {"image_size": 64, "encoding": "jpeg", "images_per_shard": 256}


def measure(work_dir: Path) -> list[dict[str, float]]:
    rows = []
    for scale in SCALES:
        command = [sys.executable, "-m", "bench.growth", str(work_dir / f"x{scale}"), str(BASE_IMAGES * scale)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows.append({"scale": scale, **json.loads(output.strip().splitlines()[-1])})
    return rows


def _one_size(folder: Path, images: int) -> dict[str, float]:
    import tensorflow as tf

    from bench.data import make_dataset_folder, shard_folder
    from components.records import make_dataset

    make_dataset_folder(folder / "source", images, max(2, images // 10), size=128)
    start = time.perf_counter()
    manifest, _, _ = shard_folder(folder / "source", folder / "work", DATA)
    for _ in make_dataset(manifest, "train", 64, training=True, dtype=tf.uint8):
        pass
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"images": images, "seconds": seconds, "peak_rss_mb": own, "peak_worker_rss_mb": workers}


if __name__ == "__main__":
    print(json.dumps(_one_size(Path(sys.argv[1]), int(sys.argv[2]))))
