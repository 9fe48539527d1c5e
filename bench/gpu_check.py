"""GPU check (bench/gpu_check.sh): training images/s at 224 px, fp32 against mixed precision,
and the input pipeline's rate on this machine's CPUs, from synthetic shards.

Each training row fits the improved variant (random weights: the same math, no download) for a
warm-up epoch (XLA compilation, cuDNN autotune) and then a measured epoch. Writes
bench/gpu_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from bench.report import machine
from bench.timing import images_per_second
from bench.training import EpochTimer
from components import accelerator
from components.config import IMPROVED
from components.images import encode
from components.records import make_dataset, serialize, shard_name
from components.train import compile_model

SIZE = 224
POLICY = {"rotation_degrees": 20.0, "shift_fraction": 0.2, "horizontal_flip": True}
VARIANTS = {
    "fp32": {"mixed_precision": "off", "xla": "off"},
    "mixed_float16": {"mixed_precision": "on", "xla": "off"},
    "mixed_float16 + XLA (improved)": {"mixed_precision": "on", "xla": "on"},
}


def write_shards(folder: Path, count: int, per_shard: int = 256) -> str:
    """Smooth random 224 px images (JPEG sizes like photos, not like noise) and a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [shard_name("train", index, -(-count // per_shard)) for index in range(-(-count // per_shard))]
    for index, name in enumerate(names):
        with tf.io.TFRecordWriter(str(folder / name)) as writer:
            for _ in range(min(per_shard, count - index * per_shard)):
                coarse = Image.fromarray(rng.integers(0, 256, (14, 14, 3), dtype=np.uint8))
                writer.write(serialize(encode(coarse, SIZE, "jpeg", 95), int(rng.integers(2)), "synthetic"))
    manifest = {
        "image_size": SIZE,
        "splits": {"train": {"files": names, "count": count}},
        "augmentation": {"policy": POLICY, "applied": "live"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return str(folder / "manifest.json")


def training_rate(switches: dict, batches_for: callable, steps: int) -> tuple[float, int]:
    fit = IMPROVED.fit.with_changes(**switches)
    placement = accelerator.resolve(fit)
    keras.utils.set_random_seed(0)
    with accelerator.building(placement):
        model = compile_model(IMPROVED.model.with_changes(backbone_weights="none"), fit, SIZE, placement)
    timer = EpochTimer()
    model.fit(batches_for(placement.global_batch_size), epochs=2, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=False)
    return steps * placement.global_batch_size / timer.seconds, placement.global_batch_size


def in_memory(batch_size: int) -> tf.data.Dataset:
    images = tf.random.uniform([batch_size, SIZE, SIZE, 3], 0, 256, dtype=tf.int32)
    labels = tf.cast(tf.random.uniform([batch_size, 1], 0, 2, dtype=tf.int32), tf.float32)
    return tf.data.Dataset.from_tensors((tf.cast(images, tf.uint8), labels)).repeat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60, help="Measured steps per training row (default: %(default)s).")
    parser.add_argument("--images", type=int, default=4096, help="Synthetic shard images (default: %(default)s).")
    parser.add_argument("--work", default="work/gpu-check", help="Where the shards go (default: %(default)s).")
    parser.add_argument("--out", default="bench/gpu_results.json")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict = {"machine": machine(), "training_images_per_second": {}}
    if not results["machine"]["gpus"]:
        print("WARNING: TensorFlow sees no GPU; the figures below are CPU figures.")
    manifest = write_shards(Path(args.work), args.images)
    live = make_dataset(manifest, "train", 256, training=True, dtype=tf.uint8).repeat()
    input_rate = results["input_images_per_second_live_augmentation"] = images_per_second(live, 8 * args.images)
    print(f"input pipeline, live fused augmentation, {os.cpu_count()} CPU cores: {input_rate:.0f} img/s")
    for name, switches in VARIANTS.items():
        try:
            rate, batch = training_rate(switches, in_memory, args.steps)
        except Exception as error:  # one failing variant must not hide the others' figures
            print(f"{name}: FAILED ({type(error).__name__}: {error})")
            continue
        results["training_images_per_second"][name] = rate
        print(f"training, in-memory batches, {name}, global batch {batch}: {rate:.0f} img/s")
    best = VARIANTS["mixed_float16 + XLA (improved)"]
    rate, _ = training_rate(best, lambda batch: make_dataset(manifest, "train", batch, training=True, dtype=tf.uint8).repeat(), args.steps)
    results["training_images_per_second_from_shards_improved"] = rate
    print(f"training from shards (live augmentation), improved: {rate:.0f} img/s  (target >= 2000 on one H100)")
    results["wall_seconds"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wall time {results['wall_seconds']:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
