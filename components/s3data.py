"""Mirror an s3://bucket/prefix dataset into a local cache, fetching only what changed.

An object is fetched again when its size or ETag differs from the last sync, or when the cached
file no longer matches. Each download lands beside its target, is checked (size, and MD5 where
the ETag is one), then renamed into place, so a partial download never passes as complete. The
cache's state file is written last, after every object has been verified.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import boto3

from components.cli_support import component_main
from components.config import Strict

STATE_NAME = ".s3-sync-state.json"


class SyncConfig(Strict):
    uri: str
    cache_dir: str = "work/s3-cache"


class SyncResult(Strict):
    uri: str
    local_root: str
    fetched: int
    unchanged: int
    removed: int
    bytes_fetched: int


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_uri(uri: str) -> tuple[str, str]:
    if not is_s3(uri) or not uri[5:].split("/", 1)[0]:
        raise ValueError(f"Expected s3://bucket/prefix. Received: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def s3_client():
    """boto3 against MLFLOW_S3_ENDPOINT_URL when set (MinIO, moto), else AWS; credentials from the environment."""
    return boto3.client("s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)


def run(cfg: SyncConfig) -> SyncResult:
    bucket, prefix = split_uri(cfg.uri)
    root = Path(cfg.cache_dir) / bucket / prefix
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / STATE_NAME
    previous = json.loads(state_path.read_text()) if state_path.is_file() else {}
    client = s3_client()
    current, fetched, bytes_fetched = {}, 0, 0
    for item in _list_objects(client, bucket, prefix):
        relative = item["Key"][len(prefix) :].lstrip("/") if prefix else item["Key"]
        target = root / relative
        stamp = {"size": item["Size"], "etag": item["ETag"].strip('"')}
        if previous.get(relative) != stamp or not target.is_file() or target.stat().st_size != stamp["size"]:
            _download(client, bucket, item["Key"], target, stamp)
            fetched, bytes_fetched = fetched + 1, bytes_fetched + stamp["size"]
        current[relative] = stamp
    removed = 0
    for relative in set(previous) - set(current):  # gone from the bucket: the mirror follows
        (root / relative).unlink(missing_ok=True)
        removed += 1
    partial = state_path.with_suffix(".partial")
    partial.write_text(json.dumps(current, indent=1, sort_keys=True))
    os.replace(partial, state_path)
    return SyncResult(
        uri=cfg.uri, local_root=str(root), fetched=fetched, unchanged=len(current) - fetched, removed=removed, bytes_fetched=bytes_fetched
    )


def _list_objects(client, bucket: str, prefix: str):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "")
    for page in pages:
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):
                yield item


def _download(client, bucket: str, key: str, target: Path, stamp: dict) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    client.download_file(bucket, key, str(partial))
    size = partial.stat().st_size
    if size != stamp["size"]:
        partial.unlink()
        raise OSError(f"s3://{bucket}/{key}: got {size} bytes, expected {stamp['size']}")
    # A multipart ETag ("<md5>-<parts>") is not the file's MD5; only a plain one can be checked.
    if "-" not in stamp["etag"] and hashlib.md5(partial.read_bytes(), usedforsecurity=False).hexdigest() != stamp["etag"]:
        partial.unlink()
        raise OSError(f"s3://{bucket}/{key}: content does not match its ETag {stamp['etag']}")
    os.replace(partial, target)


def main(argv: list[str] | None = None) -> None:
    component_main("detector sync", __doc__, SyncConfig, run, argv)


if __name__ == "__main__":
    main()
