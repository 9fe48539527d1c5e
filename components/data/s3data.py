"""Mirror an s3://bucket/prefix dataset into a local cache, fetching only what changed.

An object is fetched again when its size or ETag differs from the last sync, or when the cached
file no longer matches. Each download lands beside its target, is checked (size, and MD5 where
the ETag is one), then renamed into place, so a partial download never passes as complete. The
cache's state file is written last, after every object has been verified.

Object keys come from whoever can write the bucket, so none is trusted as a path. A key whose
part below the prefix holds an empty, `.` or `..` segment, that would land outside the cache, that
collides with another key once Unicode-normalised, or that is both a file and a folder is
refused: it is neither written nor removed, and is named in `SyncResult.refused` with the reason.
One bad key never stops the sync of the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import unicodedata
from pathlib import Path

import boto3

from components.cli_support import component_main
from components.contracts import SyncConfig, SyncResult

STATE_NAME = ".s3-sync-state.json"
# S3's own bucket naming rule; anything else (`..`, `a/b`) would steer the cache path.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
NAME_MAX = 255  # bytes per path segment on Linux and macOS file systems
logger = logging.getLogger(__name__)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_uri(uri: str) -> tuple[str, str]:
    if not is_s3(uri) or not uri[5:].split("/", 1)[0]:
        raise ValueError(f"Expected s3://bucket/prefix. Received: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    prefix = prefix.strip("/")
    if not BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"Not a valid S3 bucket name. Received: uri={uri!r}")
    if prefix and (problem := segment_problem(prefix)):
        raise ValueError(f"The prefix {problem}. Received: uri={uri!r}")
    return bucket, prefix


def s3_client():
    """boto3 against MLFLOW_S3_ENDPOINT_URL when set (MinIO, moto), else AWS; credentials from the environment."""
    return boto3.client("s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)


def segment_problem(relative: str) -> str | None:
    """Why a slash-separated relative path is not a plain path below its root, or None."""
    if "\x00" in relative:
        return "holds a NUL byte"
    for segment in relative.split("/"):
        if segment in ("", ".", ".."):
            return f"holds a {segment!r} segment" if segment else "holds an empty segment"
        if len(segment.encode("utf-8", "surrogateescape")) > NAME_MAX:
            return f"has a segment longer than {NAME_MAX} bytes"
    return None


def inside(root: Path, relative: str) -> Path:
    """root/relative, or ValueError when it (through symlinks too) resolves outside root."""
    if problem := segment_problem(relative):
        raise ValueError(problem)
    if relative == STATE_NAME or relative.split("/")[-1].endswith(".partial"):
        raise ValueError("is a name the sync keeps for itself")
    target = root / relative
    if not target.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"resolves outside the cache {root}")
    return target


def plan(keys: dict[str, str], root: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Which relative paths may be written (relative -> target) and which keys are refused (key -> why)."""
    targets, refused = {}, {}
    for relative, key in keys.items():
        try:
            targets[relative] = inside(root, relative)
        except ValueError as error:
            refused[key] = str(error)
    by_normal: dict[str, list[str]] = {}
    for relative in targets:
        by_normal.setdefault(unicodedata.normalize("NFC", relative), []).append(relative)
    for group in (group for group in by_normal.values() if len(group) > 1):
        for relative in group:  # which one would win depends on listing order: none does
            refused[keys[relative]] = f"collides with {sorted(keys[other] for other in group if other != relative)} once normalised"
    folders = {"/".join(relative.split("/")[:depth]) for relative in targets for depth in range(1, relative.count("/") + 1)}
    for relative in targets.keys() & folders:
        refused[keys[relative]] = "is both an object and a folder of other objects"
    return {relative: target for relative, target in targets.items() if keys[relative] not in refused}, refused


def run(cfg: SyncConfig) -> SyncResult:
    bucket, prefix = split_uri(cfg.uri)
    root = Path(cfg.cache_dir) / bucket / prefix
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / STATE_NAME
    previous = json.loads(state_path.read_text()) if state_path.is_file() else {}
    client = s3_client()
    listed = {_relative(item["Key"], prefix): item for item in _list_objects(client, bucket, prefix)}
    targets, refused = plan({relative: item["Key"] for relative, item in listed.items()}, root)
    removed = _remove_gone(root, set(previous) - set(targets), refused)
    current, fetched, bytes_fetched = {}, 0, 0
    for relative, target in targets.items():
        item = listed[relative]
        stamp = {"size": item["Size"], "etag": item["ETag"].strip('"')}
        if previous.get(relative) != stamp or not target.is_file() or target.stat().st_size != stamp["size"]:
            _download(client, bucket, item["Key"], target, stamp)
            fetched, bytes_fetched = fetched + 1, bytes_fetched + stamp["size"]
        current[relative] = stamp
    for key, reason in sorted(refused.items()):
        logger.warning("s3 sync refused %r: %s", key, reason)
    partial = state_path.with_suffix(".partial")
    partial.write_text(json.dumps(current, indent=1, sort_keys=True))
    os.replace(partial, state_path)
    return SyncResult(
        uri=cfg.uri,
        local_root=str(root),
        fetched=fetched,
        unchanged=len(current) - fetched,
        removed=removed,
        bytes_fetched=bytes_fetched,
        refused=refused,
    )


def _relative(key: str, prefix: str) -> str:
    # No lstrip: a bucket-root key "/etc/x" must keep its empty first segment so it is refused.
    return key[len(prefix) + 1 :] if prefix else key


def _remove_gone(root: Path, gone: set[str], refused: dict[str, str]) -> int:
    """Follow deletions from the bucket, never touching a path the state file names outside the cache."""
    removed = 0
    for relative in sorted(gone):
        try:
            target = inside(root, relative)
        except ValueError as error:
            refused.setdefault(relative, f"not removed: {error}")
            continue
        if target.is_file() or target.is_symlink():
            target.unlink()
        removed += 1
        for parent in target.parents:  # an emptied folder may now be where a file belongs
            if parent == root or not parent.is_dir() or any(parent.iterdir()):
                break
            parent.rmdir()
    return removed


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
