"""What the S3 sync verifies, object by object, as AWS would serve them.

Through a loopback proxy in front of moto's S3 server (tests/faults/s3_proxy.py), chosen objects
get the ETag and encryption header AWS gives SSE-KMS objects, or a byte flipped on the way.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from components.data import s3data
from components.data.validate import DatasetError, ValidateConfig
from components.data.validate import run as validate
from tests.faults.s3_proxy import Rewrite, S3RewritingProxy

NOT_AN_MD5 = hashlib.md5(b"what SSE-KMS puts in an ETag is not the content's MD5").hexdigest()


@pytest.fixture
def proxy(s3_env: str, monkeypatch: pytest.MonkeyPatch):
    """The sync talks to the proxy; the test writes to moto directly."""
    monkeypatch.setattr(s3data, "RETRY_PAUSE_SECONDS", 0.0)
    with S3RewritingProxy(s3_env) as running:
        monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", running.url)
        yield running


@pytest.fixture
def bucket(s3_env: str) -> str:
    name = f"integrity-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket=name)
    return name


def _put(s3_env: str, bucket: str, objects: dict[str, bytes], **extra) -> None:
    """As older uploaders and other tools do: no additional checksum unless one is asked for."""
    client = boto3.client("s3", endpoint_url=s3_env, config=Config(request_checksum_calculation="when_required"))
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body, **extra)


def _sync(bucket: str, tmp_path: Path) -> s3data.SyncResult:
    return s3data.run(s3data.SyncConfig(uri=f"s3://{bucket}/set", cache_dir=str(tmp_path / "cache")))


def test_a_kms_object_syncs_and_is_counted_as_checked_by_size(proxy: S3RewritingProxy, s3_env: str, bucket: str, tmp_path: Path):
    _put(s3_env, bucket, {"set/REAL/kms.png": b"encrypted at rest", "set/REAL/plain.png": b"stored as is"})
    proxy.rewrites[(bucket, "set/REAL/kms.png")] = Rewrite(etag=NOT_AN_MD5, encryption="aws:kms")
    first = _sync(bucket, tmp_path)
    assert (first.fetched, first.failed, first.verified_by) == (2, {}, {"size": 1, "md5": 1})
    assert (Path(first.local_root) / "REAL" / "kms.png").read_bytes() == b"encrypted at rest"
    second = _sync(bucket, tmp_path)
    assert (second.fetched, second.unchanged) == (0, 2)


def test_content_that_differs_from_its_md5_etag_is_caught_and_listed_while_the_rest_arrive(
    proxy: S3RewritingProxy, s3_env: str, bucket: str, tmp_path: Path
):
    _put(s3_env, bucket, {"set/REAL/good.png": b"arrives whole", "set/REAL/bad.png": b"bitten on the way"})
    proxy.rewrites[(bucket, "set/REAL/bad.png")] = Rewrite(flip_last_byte=True)
    result = _sync(bucket, tmp_path)
    local = Path(result.local_root)
    assert (local / "REAL" / "good.png").read_bytes() == b"arrives whole"
    assert not (local / "REAL" / "bad.png").exists()
    assert "does not match its MD5 ETag" in result.failed["set/REAL/bad.png"]
    assert proxy.gets[(bucket, "set/REAL/bad.png")] == s3data.ATTEMPTS
    assert [path.name for path in local.rglob("*.partial")] == []
    assert s3data.missing_after_sync(local) == {"REAL/bad.png": result.failed["set/REAL/bad.png"]}


def test_a_failed_fetch_keeps_the_last_copy_and_the_next_sync_tries_again(
    proxy: S3RewritingProxy, s3_env: str, bucket: str, tmp_path: Path
):
    _put(s3_env, bucket, {"set/REAL/a.png": b"version one"})
    local = Path(_sync(bucket, tmp_path).local_root)
    _put(s3_env, bucket, {"set/REAL/a.png": b"version two"})
    proxy.rewrites[(bucket, "set/REAL/a.png")] = Rewrite(flip_last_byte=True)
    failed = _sync(bucket, tmp_path)
    assert "kept the copy from the last sync" in failed.failed["set/REAL/a.png"]
    assert (local / "REAL" / "a.png").read_bytes() == b"version one"
    assert s3data.missing_after_sync(local) == {}
    del proxy.rewrites[(bucket, "set/REAL/a.png")]
    healed = _sync(bucket, tmp_path)
    assert (healed.fetched, healed.failed) == (1, {})
    assert (local / "REAL" / "a.png").read_bytes() == b"version two"


def test_a_sha256_checksum_verifies_an_object_whose_etag_cannot(proxy: S3RewritingProxy, s3_env: str, bucket: str, tmp_path: Path):
    _put(s3_env, bucket, {"set/FAKE/x.png": b"checked end to end"}, ChecksumAlgorithm="SHA256")
    proxy.rewrites[(bucket, "set/FAKE/x.png")] = Rewrite(etag=NOT_AN_MD5, encryption="aws:kms")
    assert _sync(bucket, tmp_path).verified_by == {"checksum": 1}
    _put(s3_env, bucket, {"set/FAKE/x.png": b"checked end to end, again"}, ChecksumAlgorithm="SHA256")
    proxy.rewrites[(bucket, "set/FAKE/x.png")] = Rewrite(etag=NOT_AN_MD5, encryption="aws:kms", flip_last_byte=True)
    result = _sync(bucket, tmp_path)
    assert "did not match calculated checksum" in result.failed["set/FAKE/x.png"]
    assert (Path(result.local_root) / "FAKE" / "x.png").read_bytes() == b"checked end to end"


def test_validation_names_the_files_the_sync_could_not_fetch(
    proxy: S3RewritingProxy, s3_env: str, bucket: str, tmp_path: Path, tiny_data_config
):
    root = Path(tiny_data_config.root)
    images = {f"set/{path.relative_to(root)}": path.read_bytes() for path in sorted(root.rglob("*.png"))}
    _put(s3_env, bucket, images)
    victim = next(key for key in images if key.startswith("set/test/"))
    proxy.rewrites[(bucket, victim)] = Rewrite(flip_last_byte=True)
    local = _sync(bucket, tmp_path).local_root
    with pytest.raises(DatasetError, match=rf"1 file\(s\) in the bucket did not arrive .*{victim.removeprefix('set/')}: "):
        validate(ValidateConfig(data=tiny_data_config.with_changes(root=local), work_dir=str(tmp_path / "work")))
