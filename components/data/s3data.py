"""Mirror an s3://bucket/prefix dataset into a local cache, fetching only what changed.

An object is fetched again when its size or ETag differs from the last sync, or when the cached
file no longer matches. Each download lands beside its target, is checked with the strongest
evidence S3 gives for that object, then renamed into place, so a partial download never passes as
complete:
- an additional checksum (CRC32, SHA-1, SHA-256; CRC32C and CRC64NVME where awscrt is
  installed), which botocore verifies as the body is read (`ChecksumMode=ENABLED`);
- else the ETag, but only where S3 promises it is the MD5: a single-part object stored
  unencrypted or with SSE-S3. Under SSE-KMS or SSE-C, or after a multipart upload, it is not;
- else the size alone, which `SyncResult.verified_by` counts apart.
A download that fails (transfer, checksum, MD5 or size, access) is tried again, then listed in
`SyncResult.failed` with its reason; the copy from the last sync, if any, stays in place, and the
sync goes on. Files that never arrived are written to `.s3-sync-failed.json` in the cache, where
validation finds them and stops with their names. The state file is written last.

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
import shutil
import time
import unicodedata
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from botocore.httpchecksum import StreamingChecksumBody

from components.cli_support import component_main
from components.contracts import SyncConfig, SyncResult

STATE_NAME = ".s3-sync-state.json"
FAILED_NAME = ".s3-sync-failed.json"  # relative path -> why it is missing; read by validation
ATTEMPTS = 3
RETRY_PAUSE_SECONDS = 0.5  # doubled after each failed attempt; botocore already retries throttling
# ETags S3 documents as the object's MD5: no server-side encryption (older objects), or SSE-S3.
MD5_ETAG_ENCRYPTION = (None, "AES256")
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
    if relative in (STATE_NAME, FAILED_NAME) or relative.split("/")[-1].endswith(".partial"):
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
    tally = _fetch_changed(client, bucket, listed, targets, previous)
    for key, reason in sorted(refused.items()):
        logger.warning("s3 sync refused %r: %s", key, reason)
    if tally.missing:
        _write_atomically(root / FAILED_NAME, tally.missing)
    else:
        (root / FAILED_NAME).unlink(missing_ok=True)
    _write_atomically(state_path, tally.current)  # last: only verified files are ever recorded
    return SyncResult(
        uri=cfg.uri,
        local_root=str(root),
        fetched=sum(tally.verified_by.values()),
        unchanged=tally.unchanged_count,
        removed=removed,
        bytes_fetched=tally.bytes_fetched,
        refused=refused,
        failed=tally.reasons,
        verified_by=tally.verified_by,
    )


def missing_after_sync(root: Path) -> dict[str, str]:
    """Files the last sync into `root` listed in the bucket but could not fetch (relative path -> why)."""
    path = root / FAILED_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


class _FetchFailed(Exception):
    pass


def _fetch_changed(client, bucket: str, listed: dict[str, dict], targets: dict[str, Path], previous: dict) -> _Tally:
    tally = _Tally()
    for relative, target in targets.items():
        item = listed[relative]
        stamp = {"size": item["Size"], "etag": item["ETag"].strip('"')}
        if previous.get(relative) == stamp and target.is_file() and target.stat().st_size == stamp["size"]:
            tally.unchanged(relative, stamp)
            continue
        try:
            tally.fetched(relative, *_fetch(client, bucket, item["Key"], target))
        except _FetchFailed as error:
            tally.failed(relative, item["Key"], str(error), previous.get(relative), target)
    return tally


class _Tally:
    """What one sync found for each object it may write."""

    def __init__(self) -> None:
        self.current: dict[str, dict] = {}  # the next state file
        self.unchanged_count = 0
        self.verified_by: dict[str, int] = {}
        self.bytes_fetched = 0
        self.reasons: dict[str, str] = {}  # object key -> why it could not be fetched
        self.missing: dict[str, str] = {}  # relative path -> why, for those with no earlier copy

    def unchanged(self, relative: str, stamp: dict) -> None:
        self.current[relative] = stamp
        self.unchanged_count += 1

    def fetched(self, relative: str, stamp: dict, how: str) -> None:
        self.current[relative] = stamp
        self.verified_by[how] = self.verified_by.get(how, 0) + 1
        self.bytes_fetched += stamp["size"]

    def failed(self, relative: str, key: str, reason: str, last: dict | None, target: Path) -> None:
        logger.warning("s3 sync could not fetch %r: %s", key, reason)
        # The last sync's copy stays under its old stamp, so the next sync tries the object again.
        if last and target.is_file() and target.stat().st_size == last["size"]:
            self.current[relative], self.reasons[key] = last, f"{reason}; kept the copy from the last sync"
        else:
            self.reasons[key] = self.missing[relative] = reason


def _write_atomically(path: Path, content: dict) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content, indent=1, sort_keys=True))
    os.replace(partial, path)


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


def _fetch(client, bucket: str, key: str, target: Path) -> tuple[dict, str]:
    """(stamp, how the content was checked), after at most ATTEMPTS tries."""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(RETRY_PAUSE_SECONDS * 2 ** (attempt - 1))
        try:
            return _download(client, bucket, key, target)
        except (OSError, BotoCoreError, ClientError) as error:
            last = error
    raise _FetchFailed(f"{last} (after {ATTEMPTS} attempts)") from last


def _download(client, bucket: str, key: str, target: Path) -> tuple[dict, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        reply = client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        with open(partial, "wb") as handle:
            shutil.copyfileobj(reply["Body"], handle)  # botocore checks the checksum on the last read
        # The stamp is what was fetched: the object may have changed since it was listed.
        stamp = {"size": reply["ContentLength"], "etag": reply["ETag"].strip('"')}
        how = _check(partial, reply, stamp, f"s3://{bucket}/{key}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return stamp, how


def _check(partial: Path, reply: dict, stamp: dict, uri: str) -> str:
    size = partial.stat().st_size
    if size != stamp["size"]:
        raise OSError(f"{uri}: got {size} bytes, expected {stamp['size']}")
    if isinstance(reply["Body"], StreamingChecksumBody):
        return "checksum"
    encryption_hides_md5 = reply.get("ServerSideEncryption") not in MD5_ETAG_ENCRYPTION or reply.get("SSECustomerAlgorithm")
    if "-" in stamp["etag"] or encryption_hides_md5:  # multipart, SSE-KMS or SSE-C: the ETag is no MD5
        return "size"
    if hashlib.md5(partial.read_bytes(), usedforsecurity=False).hexdigest() != stamp["etag"]:
        raise OSError(f"{uri}: content does not match its MD5 ETag {stamp['etag']}")
    return "md5"


def main(argv: list[str] | None = None) -> None:
    component_main("detector sync", __doc__, SyncConfig, run, argv)


if __name__ == "__main__":
    main()
