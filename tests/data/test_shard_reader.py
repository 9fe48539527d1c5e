"""The TensorFlow-free shard reader and writer against TensorFlow's own: same bytes, same batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.config import DataConfig
from components.data import schema, shard, shard_reader, validate
from components.data.reader import make_dataset
from components.data.schema import read_manifest


def _sharded(data: DataConfig, tmp_path: Path) -> str:
    work_dir = str(tmp_path / "work")
    validated = validate.run(validate.ValidateConfig(data=data, work_dir=work_dir))
    config = shard.ShardConfig(
        data=data, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=work_dir
    )
    return shard.run(config).manifest_path


def test_framing_is_byte_for_byte_tensorflows(tmp_path):
    records = [b"", b"x", bytes(range(256)) * 40]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    shard_reader.write_records(tmp_path / "ours.tfrecord", records)
    assert (tmp_path / "tf.tfrecord").read_bytes() == (tmp_path / "ours.tfrecord").read_bytes()
    assert [record.numpy() for record in tf.data.TFRecordDataset(str(tmp_path / "ours.tfrecord"))] == records


def test_examples_parse_both_ways():
    ours = schema.serialize(b"\xff\xd8jpeg", 1, "REAL/a.jpg")
    parsed = tf.train.Example.FromString(ours).features.feature
    assert parsed["image/encoded"].bytes_list.value == [b"\xff\xd8jpeg"] and parsed["image/class/label"].int64_list.value == [1]
    assert parsed["image/source"].bytes_list.value == [b"REAL/a.jpg"]
    theirs = tf.train.Example(features=tf.train.Features(feature={key: parsed[key] for key in parsed}))
    assert schema.decode_example(theirs.SerializeToString()) == (b"\xff\xd8jpeg", 1)


def test_a_flipped_byte_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "bad.tfrecord"
    shard_reader.write_records(path, [b"first record", b"second record"])
    data = bytearray(path.read_bytes())
    data[-8] ^= 0x01  # inside the second record's bytes
    path.write_bytes(bytes(data))
    (offset, length), (second, second_length) = shard_reader.record_spans(path)
    with open(path, "rb") as handle:
        assert shard_reader.read_record(handle, str(path), offset, length) == b"first record"
        with pytest.raises(ValueError, match=f"bad.tfrecord at byte {second - 12}"):
            shard_reader.read_record(handle, str(path), second, second_length)


@pytest.mark.parametrize("encoding", ["png", "jpeg"])
def test_both_readers_yield_the_same_batches_in_evaluation_order(tiny_data_config, tmp_path, encoding):
    manifest_path = _sharded(tiny_data_config.with_changes(encoding=encoding), tmp_path)
    for split in ("val", "test"):
        for replicas in (1, 2):
            ours = list(make_dataset(manifest_path, split, 5, dtype="uint8", reader="python", replicas=replicas))
            theirs = [
                tuple(part.numpy() for part in batch) for batch in make_dataset(manifest_path, split, 5, dtype="uint8", replicas=replicas)
            ]
            assert len(ours) == len(theirs) > 1
            for mine, reference in zip(ours, theirs):
                assert len(mine) == len(reference) == (3 if replicas > 1 else 2)
                for part, expected in zip(mine, reference):
                    np.testing.assert_array_equal(part, expected)


def test_padded_evaluation_scores_every_example_once(manifest_path):
    count = read_manifest(manifest_path).splits["val"].count
    assert count % 2 == 1, "the tiny val split must leave a remainder for this test to mean anything"
    batches = list(make_dataset(manifest_path, "val", count - 1, reader="python", replicas=2))
    assert [len(images) % 2 for images, _, _ in batches] == [0, 0]
    assert sum(weights.sum() for _, _, weights in batches) == count
    assert [len(images) for images, _, _ in batches] == [count - 1, 2] and batches[-1][2].tolist() == [1.0, 0.0]


def test_training_reads_a_fresh_permutation_and_drops_the_remainder_with_replicas(manifest_path):
    manifest = read_manifest(manifest_path)
    count = manifest.splits["train"].count
    reader = make_dataset(manifest_path, "train", 4, training=True, dtype="uint8", reader="python", replicas=2)
    assert len(reader) == count // 4
    first = np.concatenate([labels for _, labels in reader])
    epoch_one_order = reader.order.copy()
    reader.on_epoch_end()
    assert not np.array_equal(reader.order, epoch_one_order) and sorted(reader.order) == sorted(epoch_one_order)
    assert len(first) == 4 * (count // 4)
    whole = make_dataset(manifest_path, "train", 4, training=True, dtype="uint8", reader="python")
    assert sum(len(labels) for _, labels in whole) == count
    assert manifest.image_size == next(iter(whole))[0].shape[1]
