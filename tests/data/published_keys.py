"""What published shards and registered versions are keyed on, computed by the code as it stands:
the validated dataset's fingerprint, the shard manifest's bytes and shard key, and each variant's
registry key. `python -m tests.data.published_keys OUT.json` wrote published_keys.json with the code
before components/ became packages; tests/data/test_published_keys.py checks that today's code
still produces the same values, so shards and versions published before the move stay valid.

Source images are uncompressed BMPs drawn from a seeded generator, so their bytes (and therefore
every key) do not depend on the installed Pillow's PNG or JPEG encoders.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from components.config import PROFILES, VARIANTS, AugmentConfig, DataConfig, build_config
from components.contracts import ShardConfig, ShardResult, ValidateConfig
from components.wiring import config_key

SIZE = 32
# Shard settings that enter the shard key (data changes, augmentation), each as the run that would publish it.
SHARDINGS = {
    "png-resize": ({"encoding": "png"}, AugmentConfig()),
    "jpeg-crop": ({"encoding": "jpeg", "jpeg_quality": 90, "fit": "crop"}, AugmentConfig()),
    "jpeg-premade": ({"encoding": "jpeg", "premade_copies": 1}, AugmentConfig(rotation_degrees=10.0)),
}


def write_images(root: Path) -> None:
    rng = np.random.default_rng(7)
    for split, count in (("train", 10), ("test", 4)):
        for class_name in ("FAKE", "REAL"):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (SIZE + index, SIZE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index:02d}.bmp")


def _normalised_manifest(path: str, folder: Path) -> str:
    """The manifest's bytes, with when and where it was made replaced: the time, the folder, and the
    validated folder's name (a hash of the data folder's absolute path)."""
    text = Path(path).read_text()
    text = text.replace(json.loads(text)["created"], "<created>").replace(str(folder), "<folder>")
    return re.sub(r"/validated/[^/]+/", "/validated/<data folder>/", text)


def compute(folder: Path) -> dict:
    from components.data.shard import run as shard
    from components.data.validate import run as validate

    root = folder / "data"
    write_images(root)
    work_dir = str(folder / "work")
    values: dict = {}
    for name, (changes, augment) in SHARDINGS.items():
        data = DataConfig(root=str(root), image_size=SIZE, images_per_shard=4).with_changes(**changes)
        validated = validate(ValidateConfig(data=data, work_dir=work_dir))
        sharded: ShardResult = shard(
            ShardConfig(
                data=data,
                augment=augment,
                report_path=validated.report_path,
                dataset_fingerprint=validated.dataset_fingerprint,
                work_dir=work_dir,
                workers=1,
            )
        )
        # The registry key of each variant under each profile, on these shards.
        registry_keys = {
            f"{variant}@{profile}": config_key(build_config(variant, profile), sharded)
            for variant in sorted(VARIANTS)
            for profile in sorted(PROFILES)
        }
        values[name] = {
            "dataset_fingerprint": validated.dataset_fingerprint,
            "shard_key": sharded.shard_key,
            "manifest": _normalised_manifest(sharded.manifest_path, folder),
            "registry_keys": registry_keys,
        }
    return values


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        Path(sys.argv[1]).write_text(json.dumps(compute(Path(folder)), indent=1, sort_keys=True) + "\n")
