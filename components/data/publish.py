"""Publish a folder of files so that readers see all of it or none of it, whoever else writes it.

Each writer stages in a folder of its own (`<name>.<pid>-<random>.partial`), so two runs of one
key never share half-written files. Publishing happens under an exclusive `fcntl.flock` on
`<name>.lock` beside it: the kernel drops that lock when its holder dies, even by SIGKILL, so a
crash never leaves it held. Flock works on local disks and on NFSv4; on storage without working
locks, run one writer per key. The holder removes staging folders left by writers that died,
verifies what is published, and replaces it only if it is incomplete.

The published folder carries `PUBLISHED.json`: every file's size, written last. A folder is
complete when that list matches the folder exactly (no file missing, truncated or extra).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

PUBLISHED_NAME = "PUBLISHED.json"


class IncompletePublication(RuntimeError):
    """A published folder does not match its own file list."""


@contextlib.contextmanager
def exclusive(target: Path) -> Iterator[None]:
    """Hold the lock of `target` (blocking: the holder may be writing the very files we want)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_staging(target: Path) -> Path:
    """A private staging folder for one writer; only the lock holder may call this (see `clear_stale`)."""
    staging = target.with_name(f"{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    staging.mkdir(parents=True)
    return staging


def clear_stale(target: Path) -> None:
    """Lock holders only: staging folders of `target` are left by writers that died."""
    for leftover in target.parent.glob(f"{target.name}.*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)


def publish(staging: Path, target: Path) -> None:
    """Lock holders only: list `staging`'s files, then swap it in for `target`."""
    sizes = {path.name: path.stat().st_size for path in sorted(staging.iterdir()) if path.name != PUBLISHED_NAME}
    _write_json(staging / PUBLISHED_NAME, {"files": sizes})
    verify(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def verify(folder: Path) -> None:
    """Raise IncompletePublication unless `folder` holds exactly the files its list names, at their sizes."""
    listing = folder / PUBLISHED_NAME
    if not listing.is_file():
        raise IncompletePublication(f"{folder}: no {PUBLISHED_NAME}; never published or published before it existed")
    expected = json.loads(listing.read_text())["files"]
    found = {path.name: path.stat().st_size for path in folder.iterdir() if path.name != PUBLISHED_NAME}
    if found != expected:
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        wrong = sorted(name for name in set(found) & set(expected) if found[name] != expected[name])
        raise IncompletePublication(f"{folder}: missing {missing}, unexpected {extra}, wrong size {wrong}")


def is_complete(folder: Path) -> bool:
    try:
        verify(folder)
        return True
    except (IncompletePublication, OSError, ValueError, KeyError):
        return False


def _write_json(path: Path, content: dict) -> None:
    with open(path, "w") as handle:
        json.dump(content, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
