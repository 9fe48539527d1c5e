"""Hostile and ambiguous object keys against a real S3-compatible server (moto) on loopback.

Whoever can write the bucket chooses the keys; none of them may write, overwrite or delete a file
outside the cache, and none may stop the sync of the others.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from pathlib import Path

import pytest

from components.data import s3data


@pytest.fixture
def bucket(s3_env) -> str:
    name = f"keys-{uuid.uuid4().hex[:8]}"
    s3data.s3_client().create_bucket(Bucket=name)
    return name


def _put(bucket: str, objects: dict[str, bytes]) -> None:
    client = s3data.s3_client()
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


def _files_outside(tmp_path: Path, cache: Path) -> list[Path]:
    return [path for path in tmp_path.rglob("*") if path.is_file() and not path.is_relative_to(cache) and path.name != "victim"]


def test_a_dot_dot_key_writes_nothing_outside_the_cache(bucket: str, tmp_path: Path):
    cache = tmp_path / "deep" / "cache"
    _put(bucket, {"sets/tiny/REAL/ok.png": b"ok", "sets/tiny/../../../../escaped": b"planted"})
    result = s3data.run(s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(cache)))
    assert _files_outside(tmp_path, cache) == []
    assert (Path(result.local_root) / "REAL" / "ok.png").read_bytes() == b"ok"
    assert "'..' segment" in result.refused["sets/tiny/../../../../escaped"]
    assert result.fetched == 1


def test_a_dot_dot_key_neither_overwrites_nor_later_deletes_a_file(bucket: str, tmp_path: Path):
    cache = tmp_path / "deep" / "cache"
    victim = tmp_path / "deep" / "victim"  # where sets/tiny/../../../../victim points from the cache root
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"precious")
    cfg = s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(cache))
    _put(bucket, {"sets/tiny/REAL/ok.png": b"ok", "sets/tiny/../../../../victim": b"overwritten"})
    s3data.run(cfg)
    assert victim.read_bytes() == b"precious"
    s3data.s3_client().delete_object(Bucket=bucket, Key="sets/tiny/../../../../victim")
    s3data.run(cfg)
    assert victim.read_bytes() == b"precious"


def test_a_state_file_naming_a_path_outside_the_cache_deletes_nothing(bucket: str, tmp_path: Path):
    """A cache synced by an older version may record a `..` path; its removal is refused too."""
    cache = tmp_path / "deep" / "cache"
    victim = tmp_path / "deep" / "victim"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"precious")
    root = cache / bucket / "sets" / "tiny"
    root.mkdir(parents=True)
    (root / s3data.STATE_NAME).write_text(json.dumps({"../../../../victim": {"size": 8, "etag": "x"}}))
    _put(bucket, {"sets/tiny/REAL/ok.png": b"ok"})
    result = s3data.run(s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(cache)))
    assert victim.read_bytes() == b"precious"
    assert result.removed == 0 and "not removed" in result.refused["../../../../victim"]


def test_an_absolute_key_at_the_bucket_root_is_not_written_at_that_path(bucket: str, tmp_path: Path):
    planted = tmp_path / "absolute" / "planted"
    _put(bucket, {str(planted): b"planted", "REAL/ok.png": b"ok"})
    result = s3data.run(s3data.SyncConfig(uri=f"s3://{bucket}", cache_dir=str(tmp_path / "cache")))
    assert not planted.exists()
    assert result.refused[str(planted)] == "holds an empty segment"
    assert (Path(result.local_root) / "REAL" / "ok.png").read_bytes() == b"ok"


def test_keys_that_land_on_one_file_are_refused_not_raced(bucket: str, tmp_path: Path):
    composed, decomposed = "REAL/caf\u00e9.png", unicodedata.normalize("NFD", "REAL/caf\u00e9.png")
    _put(
        bucket,
        {
            "sets/tiny/REAL/x.png": b"plain",
            "sets/tiny/REAL//x.png": b"double slash",
            "sets/tiny/./REAL/x.png": b"dot",
            f"sets/tiny/{composed}": b"composed",
            f"sets/tiny/{decomposed}": b"decomposed",
        },
    )
    result = s3data.run(s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(tmp_path / "cache")))
    local = Path(result.local_root)
    assert (local / "REAL" / "x.png").read_bytes() == b"plain"
    assert result.refused["sets/tiny/REAL//x.png"] == "holds an empty segment"
    assert result.refused["sets/tiny/./REAL/x.png"] == "holds a '.' segment"
    assert "collides with" in result.refused[f"sets/tiny/{composed}"]
    assert "collides with" in result.refused[f"sets/tiny/{decomposed}"]
    assert sorted(path.name for path in (local / "REAL").iterdir()) == ["x.png"]


def test_a_key_that_is_also_a_folder_is_refused_and_the_rest_synced(bucket: str, tmp_path: Path):
    _put(bucket, {"sets/tiny/REAL/a": b"file", "sets/tiny/REAL/a/b.png": b"inside"})
    result = s3data.run(s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(tmp_path / "cache")))
    assert (Path(result.local_root) / "REAL" / "a" / "b.png").read_bytes() == b"inside"
    assert result.refused == {"sets/tiny/REAL/a": "is both an object and a folder of other objects"}


def test_a_folder_replaced_by_a_file_in_the_bucket_is_followed(bucket: str, tmp_path: Path):
    cfg = s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(tmp_path / "cache"))
    _put(bucket, {"sets/tiny/REAL/a/b.png": b"inside"})
    s3data.run(cfg)
    s3data.s3_client().delete_object(Bucket=bucket, Key="sets/tiny/REAL/a/b.png")
    _put(bucket, {"sets/tiny/REAL/a": b"now a file"})
    result = s3data.run(cfg)
    assert (Path(result.local_root) / "REAL" / "a").read_bytes() == b"now a file"
    assert (result.removed, result.fetched, result.refused) == (1, 1, {})


def test_a_symlink_in_the_cache_is_not_followed_out(bucket: str, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "cache" / bucket / "sets" / "tiny"
    root.mkdir(parents=True)
    (root / "REAL").symlink_to(outside)
    _put(bucket, {"sets/tiny/REAL/x.png": b"x"})
    result = s3data.run(s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(tmp_path / "cache")))
    assert list(outside.iterdir()) == []
    assert "resolves outside the cache" in result.refused["sets/tiny/REAL/x.png"]


def test_the_state_file_name_is_not_a_key_the_bucket_can_overwrite(bucket: str, tmp_path: Path):
    _put(bucket, {f"sets/tiny/{s3data.STATE_NAME}": b"{}", "sets/tiny/REAL/x.png": b"x"})
    result = s3data.run(s3data.SyncConfig(uri=f"s3://{bucket}/sets/tiny", cache_dir=str(tmp_path / "cache")))
    assert "keeps for itself" in result.refused[f"sets/tiny/{s3data.STATE_NAME}"]
    assert json.loads((Path(result.local_root) / s3data.STATE_NAME).read_text()).keys() == {"REAL/x.png"}


@pytest.mark.parametrize("uri", ["s3://bucket/../up", "s3://bucket/a/./b", "s3://bucket/a//b", "s3://../x", "s3://Bad_Bucket/x"])
def test_a_uri_that_steers_the_cache_path_is_refused(uri: str):
    with pytest.raises(ValueError, match="Received: uri="):
        s3data.split_uri(uri)
