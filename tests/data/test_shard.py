from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from components.config import AugmentConfig, DataConfig
from components.data.reader import make_dataset
from components.data.schema import IMAGE_KEY, LABEL_KEY, SOURCE_KEY, read_manifest
from components.data.shard import ShardConfig, run, split_examples
from components.data.tfdata import FEATURE_SPEC
from components.data.validate import ValidateConfig
from components.data.validate import run as validate


@pytest.fixture
def validated(tiny_data_config: DataConfig, tmp_path: Path):
    return validate(ValidateConfig(data=tiny_data_config, work_dir=str(tmp_path / "work")))


def _shard_config(data: DataConfig, validated, tmp_path: Path, **changes) -> ShardConfig:
    return ShardConfig(
        data=data.with_changes(**changes),
        report_path=validated.report_path,
        dataset_fingerprint=validated.dataset_fingerprint,
        work_dir=str(tmp_path / "work"),
        workers=2,
    )


def test_round_trip_preserves_pixels_labels_and_sources(tiny_data_config: DataConfig, validated, tmp_path: Path):
    result = run(_shard_config(tiny_data_config, validated, tmp_path))
    manifest = read_manifest(result.manifest_path)
    folder = Path(result.manifest_path).parent
    records = [
        tf.io.parse_single_example(record, FEATURE_SPEC)
        for name in manifest.splits["test"].files
        for record in tf.data.TFRecordDataset(str(folder / name))
    ]
    assert len(records) == manifest.splits["test"].count == 12
    for record in records:
        source = Path(tiny_data_config.root) / record[SOURCE_KEY].numpy().decode()
        expected = np.asarray(Image.open(source).convert("RGB"))
        decoded = tf.io.decode_png(record[IMAGE_KEY]).numpy()
        np.testing.assert_array_equal(decoded, expected)  # PNG at the same size: lossless
        assert int(record[LABEL_KEY]) == tiny_data_config.labels[source.parent.name]


def test_manifest_records_counts_policy_and_fingerprint(tiny_data_config: DataConfig, validated, tmp_path: Path):
    result = run(_shard_config(tiny_data_config, validated, tmp_path))
    manifest = read_manifest(result.manifest_path)
    usable_train = sum(validated.usable["train"].values())
    assert manifest.splits["train"].count + manifest.splits["val"].count == usable_train
    assert manifest.dataset_fingerprint == validated.dataset_fingerprint
    assert manifest.labels == {"FAKE": 0, "REAL": 1} and manifest.positive_class == "REAL"
    assert manifest.augmentation.model_dump(mode="json") == {
        "policy": AugmentConfig().model_dump(mode="json"),
        "applied": "live",
        "premade_copies": 0,
        "splits": ["train"],
    }
    names = manifest.splits["train"].files
    assert names[0] == f"train-00000-of-{len(names):05d}.tfrecord"


def test_split_is_deterministic_stratified_and_seeded(tiny_data_config: DataConfig, validated, tmp_path: Path):
    config = _shard_config(tiny_data_config, validated, tmp_path)
    first, again = split_examples(config), split_examples(config)
    other_seed = split_examples(_shard_config(tiny_data_config, validated, tmp_path, seed=7))
    assert first == again
    assert sorted(first["val"]) != sorted(other_seed["val"])
    val_labels = [label for _, label, _ in first["val"]]
    assert abs(val_labels.count(0) - val_labels.count(1)) <= 1


def test_no_image_crosses_splits(tiny_data_config: DataConfig, validated, tmp_path: Path):
    splits = split_examples(_shard_config(tiny_data_config, validated, tmp_path))
    report = pd.read_csv(validated.report_path, keep_default_na=False)
    digest = {str(Path(tiny_data_config.root) / row.path): row.sha256 for row in report.itertuples()}
    hashes = {split: {digest[path] for path, _, _ in examples} for split, examples in splits.items()}
    assert not hashes["train"] & hashes["val"] and not hashes["train"] & hashes["test"] and not hashes["val"] & hashes["test"]
    assert all(Path(path).parts[-3] == "test" and source.startswith("test/") for path, _, source in splits["test"])


def test_rerun_reuses_shards(tiny_data_config: DataConfig, validated, tmp_path: Path):
    first = run(_shard_config(tiny_data_config, validated, tmp_path))
    stamp = Path(first.manifest_path).stat().st_mtime_ns
    second = run(_shard_config(tiny_data_config, validated, tmp_path))
    changed = run(_shard_config(tiny_data_config, validated, tmp_path, image_size=48))
    assert (first.reused, second.reused, changed.reused) == (False, True, False)
    assert Path(second.manifest_path).stat().st_mtime_ns == stamp
    assert changed.shard_key != first.shard_key


def test_premade_copies_multiply_train_only(tiny_data_config: DataConfig, validated, tmp_path: Path):
    live = run(_shard_config(tiny_data_config, validated, tmp_path))
    premade = run(_shard_config(tiny_data_config, validated, tmp_path, premade_copies=3))
    assert premade.counts["train"] == 3 * live.counts["train"]
    assert premade.counts["val"] == live.counts["val"] and premade.counts["test"] == live.counts["test"]
    assert read_manifest(premade.manifest_path).augmentation.applied == "premade"


def test_reader_augments_training_split_only(tiny_data_config: DataConfig, validated, tmp_path: Path):
    manifest = run(_shard_config(tiny_data_config, validated, tmp_path)).manifest_path
    val = make_dataset(manifest, "val", batch_size=64)
    first, second = (np.concatenate([images.numpy() for images, _ in val]) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    train = make_dataset(manifest, "train", batch_size=64, training=True)
    plain = make_dataset(manifest, "train", batch_size=64)
    augmented_sum = sum(float(images.numpy().sum()) for images, _ in train)
    plain_sum = sum(float(images.numpy().sum()) for images, _ in plain)
    assert augmented_sum != pytest.approx(plain_sum, rel=1e-6)
    shapes = {tuple(images.shape[1:]) for images, _ in train}
    assert shapes == {(32, 32, 3)}


def test_manifest_is_written_last(tiny_data_config: DataConfig, validated, tmp_path: Path):
    result = run(_shard_config(tiny_data_config, validated, tmp_path))
    folder = Path(result.manifest_path).parent
    assert not list(folder.parent.glob("*.partial"))
    manifest = read_manifest(result.manifest_path)
    for entry in manifest.splits.values():
        assert all((folder / name).stat().st_mtime_ns <= Path(result.manifest_path).stat().st_mtime_ns for name in entry.files)


def test_held_out_sets_are_validated_like_test_and_sharded_as_their_own_split(tmp_path: Path, tiny_dataset: Path):
    """A held-out set lives outside data.root: its bad file is quarantined under its own split,
    its copy of a training image takes that image out of training (leakage), and it is sharded
    with the test split's encoding, under `heldout-<name>`, sources named by set."""
    held_out = tmp_path / "other-generator"
    for name in ("FAKE", "REAL"):
        (held_out / name).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(np.full((32, 32, 3), 40 * index + (name == "REAL"), np.uint8)).save(held_out / name / f"{index}.png")
    leaked = sorted((tiny_dataset / "train" / "REAL").glob("*.png"))[0]
    (held_out / "REAL" / "leaked.png").write_bytes(leaked.read_bytes())
    (held_out / "FAKE" / "broken.png").write_bytes(b"not an image")
    data = DataConfig(root=str(tiny_dataset), image_size=32, encoding="png", images_per_shard=8, test_sets={"other": str(held_out)})
    checked = validate(ValidateConfig(data=data, work_dir=str(tmp_path / "work")))
    report = pd.read_csv(checked.report_path).set_index("path")
    assert report.loc["heldout-other/FAKE/broken.png", "status"] == "quarantined"
    assert (Path(checked.quarantine_dir) / "heldout-other" / "FAKE" / "broken.png").read_bytes() == b"not an image"
    assert report.loc[f"train/REAL/{leaked.name}", "status"] == "leak"
    assert report.loc["heldout-other/REAL/leaked.png", "status"] == "ok"
    assert checked.usable["heldout-other"] == {"FAKE": 3, "REAL": 4}

    result = run(_shard_config(data, checked, tmp_path))
    manifest = read_manifest(result.manifest_path)
    assert manifest.splits["heldout-other"].per_class == {"FAKE": 3, "REAL": 4}
    assert set(manifest.splits) == {"train", "val", "test", "heldout-other"}
    images, labels = zip(*make_dataset(result.manifest_path, "heldout-other", 16))
    assert sum(len(batch) for batch in labels) == 7 and np.asarray(images[0]).shape[1:] == (32, 32, 3)
    sources = {
        record[SOURCE_KEY].numpy().decode()
        for name in manifest.splits["heldout-other"].files
        for record in map(
            lambda raw: tf.io.parse_single_example(raw, FEATURE_SPEC),
            tf.data.TFRecordDataset(str(Path(result.manifest_path).parent / name)),
        )
    }
    assert "heldout-other/REAL/leaked.png" in sources


def test_a_jpeg_quality_range_draws_each_images_quality_alike_for_both_classes(tiny_data_config: DataConfig, validated, tmp_path: Path):
    import io

    from components.data.images import jpeg_quality

    data = tiny_data_config.with_changes(encoding="jpeg", jpeg_quality_range=(40, 60))
    result = run(_shard_config(data, validated, tmp_path))
    manifest = read_manifest(result.manifest_path)
    assert manifest.encoding.jpeg_quality_range == (40, 60) and manifest.encoding.serving_quality == 50
    qualities: dict[int, list[int]] = {0: [], 1: []}
    for name in manifest.splits["train"].files:
        for raw in tf.data.TFRecordDataset(str(Path(result.manifest_path).parent / name)):
            record = tf.io.parse_single_example(raw, FEATURE_SPEC)
            qualities[int(record[LABEL_KEY])].append(jpeg_quality(Image.open(io.BytesIO(record[IMAGE_KEY].numpy()))))
    assert all(40 <= quality <= 60 for per_class in qualities.values() for quality in per_class)
    assert min(len(set(per_class)) for per_class in qualities.values()) >= 5, "each class gets many qualities, not one"
    plain = run(_shard_config(tiny_data_config.with_changes(encoding="jpeg"), validated, tmp_path))
    assert plain.shard_key != result.shard_key
    assert "jpeg_quality_range" not in json.loads(Path(plain.manifest_path).read_text())["encoding"]
