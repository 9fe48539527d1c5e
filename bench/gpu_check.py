"""GPU check (bench/gpu_check.sh): runs on Keras with JAX and no TensorFlow, from carried shards.

Prints and writes bench/gpu_results.json:
(a) in-memory training rates, baseline and improved at the photos' size (224 px), mixed_bfloat16 and float32
    (`fit` on pre-decoded uint8 batches, random weights: the same math, no download);
(b) end-to-end training rate of the improved variant from the photos' JPEG shards, decoded by the
    TensorFlow-free reader's threads, live augmentation in the model on the accelerator;
(c) the input path alone (read, CRC, parse, decode, batch) on this machine's cores;
(d) a short real training on the CIFAKE dev shards, with its test AUC.
Each training row times the epochs after the first (XLA compilation, autotuning).

Started as one of several processes (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID,
as gpu_check.sh's two-process case sets them), (b) trains over the devices of all of them, each
process reading its share of every batch: the rate is the whole job's.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from components.config import BASELINE, IMPROVED, RuntimeConfig
from components.data.reader import make_dataset
from components.data.schema import geometry, read_manifest
from components.training import accelerator, multihost
from components.training.compiled import compile_model


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch after the first."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds, self.started = 0.0, 0.0

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        if epoch:
            self.seconds += time.perf_counter() - self.started


BATCH = int(os.environ.get("GPU_CHECK_BATCH", "256"))  # per device; smaller only for a dry run on CPU


def placed(variant, precision: str, size: int, augment: dict | None = None):
    runtime = RuntimeConfig(precision=precision, batch_per_device=BATCH, reader="python", augmentation="model")
    fit = variant.fit.with_changes(batch_size=BATCH)
    placement = accelerator.resolve(fit, runtime)
    keras.utils.set_random_seed(0)
    with accelerator.building(placement):
        model = compile_model(variant.model.with_changes(backbone_weights="none"), fit, size, placement, augment)
    return placement, model


def in_memory_rate(variant, precision: str, size: int, steps: int) -> float:
    placement, model = placed(variant, precision, size)
    batch = placement.global_batch_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * steps, size, size, 3), dtype=np.uint8)
    labels = (rng.random((batch * steps, 1)) < 0.5).astype("float32")
    timer = EpochTimer()
    with accelerator.building(placement):
        model.fit(images, labels, batch_size=batch, epochs=3, callbacks=[timer], verbose=0, shuffle=False)
    return 2 * steps * batch / timer.seconds


def end_to_end_rate(manifest_path: str, epochs: int) -> float:
    manifest = read_manifest(manifest_path)
    placement, model = placed(IMPROVED, "auto", manifest.image_size, augment=geometry(manifest.augmentation.policy))
    batches = make_dataset(
        manifest_path,
        "train",
        placement.global_batch_size,
        training=True,
        dtype="uint8",
        reader="python",
        replicas=placement.replicas,
        processes=placement.processes,
        process_index=placement.process_index,
    )
    timer = EpochTimer()
    with accelerator.building(placement):
        model.fit(batches, epochs=epochs, callbacks=[timer], verbose=0)
    return (epochs - 1) * len(batches) * placement.global_batch_size / timer.seconds


def input_rate(manifest_path: str, rounds: int = 2) -> dict[str, float]:
    rates = {}
    for workers in sorted({1, os.cpu_count() or 1}):
        batches = make_dataset(manifest_path, "train", BATCH, training=True, dtype="uint8", reader="python")
        batches.workers = workers
        started, count = time.perf_counter(), 0
        for _ in range(rounds):
            count += sum(len(labels) for _, labels in batches)
        rates[f"{workers} threads"] = count / (time.perf_counter() - started)
    return rates


def short_training(manifest_path: str, epochs: int) -> dict[str, float]:
    """The improved variant's head and top layers on CIFAKE, from random weights (no download there)."""
    variant = IMPROVED.with_changes(model={"preprocessing": "imagenet", "trainable_backbone_layers": 175}, fit={"learning_rate": 1e-3})
    runtime = RuntimeConfig(batch_per_device=BATCH, reader="python")
    placement = accelerator.resolve(variant.fit.with_changes(batch_size=BATCH), runtime)
    keras.utils.set_random_seed(0)
    read = dict(dtype="uint8", reader="python", replicas=placement.replicas)
    train = make_dataset(manifest_path, "train", placement.global_batch_size, training=True, **read)
    val = make_dataset(manifest_path, "val", placement.global_batch_size, **read)
    started = time.perf_counter()
    with accelerator.building(placement):
        model = compile_model(
            variant.model.with_changes(backbone_weights="none"), variant.fit, read_manifest(manifest_path).image_size, placement
        )
        model.fit(train, validation_data=val, epochs=epochs, verbose=2)
        scores, labels = [], []
        for batch in make_dataset(manifest_path, "test", 500, dtype="uint8", reader="python"):
            scores.append(np.asarray(model.predict_on_batch(batch[0])).ravel())
            labels.append(batch[1].ravel())
    return {"test_auc": rank_auc(np.concatenate(labels), np.concatenate(scores)), "seconds": time.perf_counter() - started}


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC (ties averaged), NumPy only."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores[np.diff(np.sort(scores), prepend=np.nan) == 0]):
        ranks[scores == value] = ranks[scores == value].mean()
    positives = labels == 1
    count = positives.sum()
    return float((ranks[positives].sum() - count * (count + 1) / 2) / (count * (len(labels) - count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--carry", default="bench/carry", help="Shards made by bench/gpu_carry.py (default: %(default)s).")
    parser.add_argument("--steps", type=int, default=8, help="Steps per in-memory epoch (default: %(default)s).")
    parser.add_argument("--epochs", type=int, default=4, help="Epochs of the end-to-end row (default: %(default)s).")
    parser.add_argument("--cifake-epochs", type=int, default=6, help="Epochs of the short real training (default: %(default)s).")
    parser.add_argument("--sections", default="abcd", help="Which of (a)-(d) to run (default: %(default)s).")
    parser.add_argument("--out", default="bench/gpu_results.json")
    args = parser.parse_args()
    started = time.perf_counter()
    processes = multihost.joined()  # before anything touches a device
    gpus = accelerator.gpu_capabilities()
    results: dict = {"backend": accelerator.backend(), "gpus": gpus, "cpu_cores": os.cpu_count(), "in_memory": {}}
    results["processes"] = processes.count
    print(f"backend {results['backend']}, GPUs (compute capability) {gpus or 'none: CPU figures'}, {os.cpu_count()} CPU cores", flush=True)
    photos, cifake = str(Path(args.carry) / "photos" / "manifest.json"), str(Path(args.carry) / "cifake" / "manifest.json")
    if "c" in args.sections:
        results["input_images_per_second"] = input_rate(photos)
        print(f"(c) input path alone (read, CRC, parse, JPEG decode, batch): {results['input_images_per_second']}", flush=True)
    photo_size = read_manifest(photos).image_size
    for variant in (IMPROVED, BASELINE) if "a" in args.sections else ():
        for precision in ("mixed_bfloat16", "float32"):
            name = f"{variant.name}, {precision}"
            try:
                results["in_memory"][name] = rate = in_memory_rate(variant, precision, photo_size, args.steps)
            except Exception as error:  # one failing row must not hide the others' figures
                print(f"(a) {name}: FAILED ({type(error).__name__}: {error})", flush=True)
                continue
            print(f"(a) in-memory training, {name}, batch {BATCH}: {rate:.0f} img/s", flush=True)
    if "b" in args.sections:
        results["end_to_end_improved"] = rate = end_to_end_rate(photos, args.epochs)
        best = results["in_memory"].get("improved, mixed_bfloat16") or float("nan")
        print(
            f"(b) end-to-end from JPEG shards, improved, live augmentation in the model: {rate:.0f} img/s ({rate / best:.2f} of in-memory)"
        )
        print("    targets: in-memory improved >= 20,000 img/s; end-to-end >= 0.7 of it", flush=True)
    if "d" in args.sections:
        results["cifake"] = short_training(cifake, args.cifake_epochs)
        print(f"(d) CIFAKE dev, {args.cifake_epochs} epochs from random weights: test AUC {results['cifake']['test_auc']:.3f}")
    results["wall_seconds"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wall time {results['wall_seconds']:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
