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
    for smaller, larger in zip(rows, rows[1:]):
        # Linear growth shows as a constant marginal cost; the 1× run also pays the fixed start-up.
        larger["marginal_ms_per_image"] = 1000 * (larger["seconds"] - smaller["seconds"]) / (larger["images"] - smaller["images"])
    return rows


def _one_size(folder: Path, images: int) -> dict[str, float]:
    import tensorflow as tf

    from bench.data import make_dataset_folder, shard_folder
    from components.data.reader import make_dataset

    make_dataset_folder(folder / "source", images, max(2, images // 10), size=128)
    start = time.perf_counter()
    manifest, _, _ = shard_folder(folder / "source", folder / "work", DATA)
    for _ in make_dataset(manifest, "train", 64, training=True, dtype=tf.uint8):
        pass
    return {"images": images, "seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's high-water mark. Not ru_maxrss: Linux carries that over from the parent
    through fork and exec, so every size would report the benchmark's own footprint."""
    status = Path("/proc/self/status")
    if status.is_file():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


if __name__ == "__main__":
    print(json.dumps(_one_size(Path(sys.argv[1]), int(sys.argv[2]))))
