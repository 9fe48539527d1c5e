"""Split the validated images (seeded, stratified) and write TFRecord shards plus a manifest.

Both classes are re-encoded identically (codec, quality, size), so a detector cannot learn the
file format instead of the image. The manifest records the training split's augmentation
policy; the reader applies it live, or `premade_copies` bakes that many augmented copies into
the shards for hosts whose CPUs can't keep up. Output lives under a key made of the dataset
fingerprint and this config, and a rerun with the same key reuses it. Each run writes in a
staging folder of its own and publishes under a per-key lock (components/data/publish.py), so runs
sharing a key (baseline and improved) both end with one complete, identical set. Under the Ray
engine (components/data/engine.py) Ray tasks write runs of shards into that staging folder; each
shard's bytes are a function of its records alone, so they equal the local engine's.
"""

from __future__ import annotations

import math
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import tensorflow as tf
from sklearn.model_selection import train_test_split

from components.cli_support import component_main
from components.config import DataConfig, fingerprint
from components.contracts import (
    MANIFEST_VERSION,
    Augmentation,
    Manifest,
    ManifestEncoding,
    ManifestSource,
    ShardConfig,
    ShardResult,
    SplitEntry,
    SplitPolicy,
)
from components.data import engine, publish
from components.data.fit import TRAIN_CROP_MARGIN
from components.data.guard import Guard, guarded
from components.data.images import ImageJob, prepare_example, printable
from components.data.schema import MANIFEST_NAME, geometry, serialize, shard_name
from components.data.validate import read_report, source_path, split_folders


def run(cfg: ShardConfig) -> ShardResult:
    key = shard_key(cfg)
    out_dir = Path(cfg.work_dir) / "shards" / key
    manifest_path = out_dir / MANIFEST_NAME
    if _complete(manifest_path):
        return _result(manifest_path, reused=True)
    # One writer per key at a time (components/data/publish.py); a run that waited finds the set published.
    with publish.exclusive(out_dir):
        if _complete(manifest_path):
            return _result(manifest_path, reused=True)
        publish.clear_stale(out_dir)
        staging = publish.new_staging(out_dir)
        plans = {split: _plan_split(split, examples, cfg) for split, examples in split_examples(cfg).items()}
        shards = [shard for plan in plans.values() for shard in plan]
        written = iter(_write_all(shards, cfg, staging))
        split_entries = {split: _entry([name for name, _ in plan], [next(written) for _ in plan], cfg) for split, plan in plans.items()}
        _manifest(cfg, key, split_entries).write(staging / MANIFEST_NAME)
        publish.publish(staging, out_dir)
    return _result(manifest_path, reused=False)


def shard_key(cfg: ShardConfig) -> str:
    data = cfg.data
    relevant = [
        data.image_size,
        data.encoding,
        data.jpeg_quality,
        data.images_per_shard,
        data.val_fraction,
        data.seed,
        data.class_names,
        data.premade_copies,
    ]
    if data.premade_copies:
        relevant.append(cfg.augment.model_dump())
    if data.fit != "resize":  # appended only then, so shards written before `fit` existed keep their key
        relevant.append(data.fit)
    if data.jpeg_quality_range:  # likewise
        relevant.append(list(data.jpeg_quality_range))
    return fingerprint(MANIFEST_VERSION, cfg.dataset_fingerprint, relevant)


def split_examples(cfg: ShardConfig) -> dict[str, list[tuple[str, int, str]]]:
    """(path, label, source) per split, the source being the report's path. Sorting by content
    hash first makes the split depend on the images and the seed only, not on file names or
    listing order. Held-out sets keep their own split (`heldout-<name>`), as the test split does."""
    data = cfg.data
    report = read_report(cfg.report_path)
    usable = report[report.status == "ok"].sort_values(["sha256", "path"])
    folders = split_folders(data)
    examples: dict[str, list[tuple[str, int, str]]] = {split: [] for split in (data.train_dir, data.test_dir, *data.held_out)}
    for row in usable.itertuples():
        examples[row.split].append((str(source_path(folders, row.path)), data.labels[row.class_name], printable(row.path)))
    train_pool = examples.pop(data.train_dir)
    train, val = train_test_split(
        train_pool, test_size=data.val_fraction, random_state=data.seed, stratify=[label for _, label, _ in train_pool]
    )
    return {"train": train, "val": sorted(val), "test": examples.pop(data.test_dir), **examples}


# One shard: its file name and its records, each (what to encode, label, source path for the record).
Shard = tuple[str, list[tuple[ImageJob, int, str]]]
# What writing one shard gave: the label of each record written, and why each skipped source was skipped.
Written = tuple[list[int], dict[str, str]]


def _plan_split(split: str, examples: list[tuple[str, int, str]], cfg: ShardConfig) -> list[Shard]:
    data = cfg.data
    copies = data.premade_copies if split == "train" and data.premade_copies else 0
    # Only the geometric warp is baked in; JPEG and blur (components/data/degrade.py) stay live.
    policy = geometry(cfg.augment.model_dump()) if copies else None
    records = [(path, label, source) for path, label, source in examples for _ in range(max(copies, 1))]
    if split == "train":
        random.Random(data.seed).shuffle(records)  # mixes the classes within every shard
    margin = TRAIN_CROP_MARGIN if split == "train" and data.fit == "crop" else 1
    jobs = [
        (
            ImageJob(
                path=path,
                size=data.image_size,
                encoding=data.encoding,
                quality=quality_for(data, split, index),
                max_pixels=data.max_image_pixels,
                augment_policy=policy,
                seed=data.seed * 1_000_003 + index,
                fit=data.fit,
                margin=margin,
            ),
            label,
            source,
        )
        for index, (path, label, source) in enumerate(records)
    ]
    count = max(1, math.ceil(len(records) / data.images_per_shard))
    size = data.images_per_shard
    return [(shard_name(split, index, count), jobs[index * size : (index + 1) * size]) for index in range(count)]


def _write_all(shards: list[Shard], cfg: ShardConfig, folder: Path) -> list[Written]:
    budgets = (cfg.data.decode_timeout_seconds, cfg.data.decode_memory_mb)
    if cfg.engine == "local":
        with guarded(cfg.workers or os.cpu_count() or 1, *budgets) as guard:
            return write_shards(shards, str(folder), guard)
    with engine.ray_cluster(cfg.workers) as cpus:
        arguments = [(part, str(folder), *budgets) for part in engine.partitions(shards, cpus)]
        return [written for part in engine.map_partitions(write_shards_guarded, arguments) for written in part]


def write_shards_guarded(shards: list[Shard], folder: str, timeout_seconds: float, memory_mb: int) -> list[Written]:
    """A Ray task: these shards, decoded in a one-worker guarded pool of its own. A retry after its
    worker died writes them again whole (each file is replaced, never appended to)."""
    with guarded(1, timeout_seconds, memory_mb) as guard:
        return write_shards(shards, folder, guard)


def write_shards(shards: list[Shard], folder: str, guard: Guard) -> list[Written]:
    """Decodes stream through `guard` across shard boundaries, so no worker idles at a shard's end.
    A file that fails now (changed since validation, over a budget) is skipped and named in the
    manifest; one file never stops the run."""
    outcomes = guard.map(prepare_example, [job for _, records in shards for job, _, _ in records])
    results = []
    for name, records in shards:
        labels, skipped = [], {}
        with tf.io.TFRecordWriter(str(Path(folder) / name)) as writer:
            for _, label, source in records:
                outcome = next(outcomes)
                if outcome.error is not None:
                    skipped[source] = outcome.error
                    continue
                writer.write(serialize(outcome.value, label, source))
                labels.append(label)
        results.append((labels, skipped))
    return results


def _entry(names: list[str], written: list[Written], cfg: ShardConfig) -> SplitEntry:
    labels = [label for shard_labels, _ in written for label in shard_labels]
    skipped = {source: reason for _, shard_skipped in written for source, reason in shard_skipped.items()}
    per_class = {name: labels.count(index) for name, index in cfg.data.labels.items()}
    return SplitEntry(files=names, count=len(labels), per_class=per_class, skipped=skipped)


def quality_for(data: DataConfig, split: str, index: int) -> int:
    """data.jpeg_quality, or a draw from data.jpeg_quality_range seeded by the split and the
    record's position, never by its class, so both classes get the same distribution."""
    if not data.jpeg_quality_range:
        return data.jpeg_quality
    return random.Random(f"{data.seed}/{split}/{index}").randint(*data.jpeg_quality_range)


def _manifest(cfg: ShardConfig, key: str, splits: dict[str, SplitEntry]) -> Manifest:
    data = cfg.data
    return Manifest(
        version=MANIFEST_VERSION,
        shard_key=key,
        dataset_fingerprint=cfg.dataset_fingerprint,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source=ManifestSource(root=data.root, validation_report=cfg.report_path),
        class_names=sorted(data.class_names),
        labels=data.labels,
        positive_class=data.positive_class,
        generated_class=data.generated_class,
        image_size=data.image_size,
        fit=data.fit,
        encoding=ManifestEncoding(codec=data.encoding, jpeg_quality=data.jpeg_quality if data.encoding == "jpeg" else None)
        if not data.jpeg_quality_range
        else ManifestEncoding(codec="jpeg", jpeg_quality_range=data.jpeg_quality_range),
        split=SplitPolicy(seed=data.seed, val_fraction=data.val_fraction, stratified=True),
        augmentation=Augmentation(
            policy=cfg.augment.model_dump(),
            applied="premade" if data.premade_copies else "live",
            premade_copies=data.premade_copies,
            splits=["train"],
        ),
        splits=splits,
    )


def _complete(manifest_path: Path) -> bool:
    """Published whole (every file at its size, nothing extra) and the manifest names only those shards."""
    if not publish.is_complete(manifest_path.parent):
        return False
    manifest = Manifest.read(manifest_path)
    return all((manifest_path.parent / name).is_file() for entry in manifest.splits.values() for name in entry.files)


def _result(manifest_path: Path, reused: bool) -> ShardResult:
    manifest = Manifest.read(manifest_path)
    return ShardResult(
        manifest_path=str(manifest_path),
        shard_key=manifest.shard_key,
        dataset_fingerprint=manifest.dataset_fingerprint,
        counts=manifest.counts,
        reused=reused,
    )


def main(argv: list[str] | None = None) -> None:
    component_main("detector shard", __doc__, ShardConfig, run, argv)


if __name__ == "__main__":
    main()
