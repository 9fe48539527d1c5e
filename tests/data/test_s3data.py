"""Syncing an s3:// dataset against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from components.data import s3data


def _upload(client, bucket: str, root: Path, prefix: str) -> int:
    count = 0
    for path in sorted(root.rglob("*.png")):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root)}")
        count += 1
    return count


@pytest.fixture
def bucket_with_dataset(s3_env, tiny_dataset: Path) -> tuple[str, int]:
    client = s3data.s3_client()
    bucket = f"data-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    return bucket, _upload(client, bucket, tiny_dataset, "sets/tiny")


def test_first_sync_fetches_everything_then_nothing(bucket_with_dataset, tmp_path: Path, tiny_dataset: Path):
    bucket, count = bucket_with_dataset
    cfg = s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(tmp_path / "cache"))
    first = s3data.run(cfg)
    assert (first.fetched, first.unchanged) == (count, 0)
    local = Path(first.local_root)
    some = next(iter(sorted(tiny_dataset.rglob("train_real_*.png"))))
    assert (local / some.relative_to(tiny_dataset)).read_bytes() == some.read_bytes()
    second = s3data.run(cfg)
    assert (second.fetched, second.unchanged, second.bytes_fetched) == (0, count, 0)


def test_changed_and_deleted_objects_are_followed(bucket_with_dataset, tmp_path: Path):
    bucket, count = bucket_with_dataset
    cfg = s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(tmp_path / "cache"))
    local = Path(s3data.run(cfg).local_root)
    client = s3data.s3_client()
    client.put_object(Bucket=bucket, Key="sets/tiny/train/REAL/train_real_00000.png", Body=b"new bytes")
    client.delete_object(Bucket=bucket, Key="sets/tiny/train/REAL/train_real_00001.png")
    result = s3data.run(cfg)
    assert (result.fetched, result.removed, result.unchanged) == (1, 1, count - 2)
    assert (local / "train" / "REAL" / "train_real_00000.png").read_bytes() == b"new bytes"
    assert not (local / "train" / "REAL" / "train_real_00001.png").exists()


def test_a_truncated_cached_file_is_fetched_again(bucket_with_dataset, tmp_path: Path):
    bucket, _ = bucket_with_dataset
    cfg = s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(tmp_path / "cache"))
    local = Path(s3data.run(cfg).local_root)
    victim = local / "test" / "FAKE" / "test_fake_00000.png"
    original = victim.read_bytes()
    victim.write_bytes(original[: len(original) // 2])  # as a crash mid-copy would leave it
    result = s3data.run(cfg)
    assert result.fetched == 1 and victim.read_bytes() == original
    state = json.loads((local / s3data.STATE_NAME).read_text())
    assert state["test/FAKE/test_fake_00000.png"]["size"] == len(original)


def test_synced_copy_validates_like_the_local_one(bucket_with_dataset, tmp_path: Path, tiny_data_config):
    from components.data.validate import ValidateConfig
    from components.data.validate import run as validate

    bucket, _ = bucket_with_dataset
    local = s3data.run(s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(tmp_path / "cache"))).local_root
    png_only = Path(shutil.copytree(tiny_data_config.root, tmp_path / "png-only", ignore=shutil.ignore_patterns("*.jpg")))
    from_s3 = validate(ValidateConfig(data=tiny_data_config.with_changes(root=local), work_dir=str(tmp_path / "a")))
    from_disk = validate(ValidateConfig(data=tiny_data_config.with_changes(root=str(png_only)), work_dir=str(tmp_path / "b")))
    assert from_s3.dataset_fingerprint == from_disk.dataset_fingerprint


def test_bad_uri_is_named():
    with pytest.raises(ValueError, match=r"s3://bucket/prefix. Received: 'file:///data'"):
        s3data.split_uri("file:///data")
