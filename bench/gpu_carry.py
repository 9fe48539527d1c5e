"""Shards for bench/gpu_check.sh, written here and carried to the GPU host (`make gpu-carry`).

TensorFlow-free (components/data/shard_reader.py writes the framing), so the same code can write them
on the GPU host itself. Two sets, under bench/carry/ (git-ignored):
- photos/: photo-like JPEGs, 224 px unless `--photo-size` says otherwise (smooth colour fields
  plus fine grain, about the size of camera photos at that scale), with the improved variant's
  live augmentation policy;
- cifake/: the CIFAKE dev subset (../shared/data/cifake-dev) as it is, 32 px JPEGs, for a short real
  training with a test AUC.
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

import numpy as np
from PIL import Image

from components.contracts import Augmentation, Manifest, ManifestEncoding, ManifestSource, SplitEntry, SplitPolicy
from components.data.schema import serialize, shard_name
from components.data.shard_reader import write_records

POLICY = {"rotation_degrees": 20.0, "shift_fraction": 0.2, "horizontal_flip": True}
PER_SHARD = 256


def write_set(folder: Path, splits: dict[str, list[tuple[bytes, int]]], size: int, policy: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for split, examples in splits.items():
        count = -(-len(examples) // PER_SHARD)
        names = [shard_name(split, index, count) for index in range(count)]
        for index, name in enumerate(names):
            chunk = examples[index * PER_SHARD : (index + 1) * PER_SHARD]
            write_records(folder / name, (serialize(data, label, f"{split}/{i}") for i, (data, label) in enumerate(chunk)))
        entries[split] = SplitEntry(files=names, count=len(examples))
    # Made here, not by components/data/shard.py: the provenance fields say so.
    manifest = Manifest(
        shard_key=folder.name,
        dataset_fingerprint=folder.name,
        created="",
        source=ManifestSource(root=str(folder), validation_report=""),
        class_names=["FAKE", "REAL"],
        labels={"FAKE": 0, "REAL": 1},
        positive_class="REAL",
        generated_class="FAKE",
        image_size=size,
        encoding=ManifestEncoding(codec="jpeg"),
        split=SplitPolicy(seed=0, val_fraction=0.0, stratified=False),
        augmentation=Augmentation(policy=policy, applied="live"),
        splits=entries,
    )
    path = folder / "manifest.json"
    manifest.write(path)
    return path


def photo_like(count: int, size: int = 224, quality: int = 90, seed: int = 0) -> list[tuple[bytes, int]]:
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        grain = rng.normal(0, 6, (size, size, 3))
        pixels = np.clip(np.asarray(coarse, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        examples.append((buffer.getvalue(), int(rng.integers(2))))
    return examples


def cifake(root: Path, val_fraction: float = 0.1, seed: int = 0) -> dict[str, list[tuple[bytes, int]]]:
    labels = {"FAKE": 0, "REAL": 1}
    read = {
        split: [(path.read_bytes(), labels[path.parent.name]) for path in sorted((root / split).glob("*/*.jpg"))]
        for split in ("train", "test")
    }
    random.Random(seed).shuffle(read["train"])
    cut = int(len(read["train"]) * val_fraction)
    return {"train": read["train"][cut:], "val": read["train"][:cut], "test": read["test"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/carry", help="Where the two sets go (default: %(default)s).")
    parser.add_argument("--photos", type=int, default=2000, help="How many photo-like images (default: %(default)s).")
    parser.add_argument(
        "--photo-size", type=int, default=224, help="Their size in pixels; smaller only for a dry run (default: %(default)s)."
    )
    parser.add_argument("--cifake", default="../shared/data/cifake-dev", help="CIFAKE subset root; '' skips it (default: %(default)s).")
    args = parser.parse_args()
    out = Path(args.out)
    print(write_set(out / "photos", {"train": photo_like(args.photos, args.photo_size)}, args.photo_size, POLICY))
    if args.cifake:
        print(
            write_set(
                out / "cifake", cifake(Path(args.cifake)), 32, {"rotation_degrees": 0.0, "shift_fraction": 0.0, "horizontal_flip": True}
            )
        )


if __name__ == "__main__":
    main()
