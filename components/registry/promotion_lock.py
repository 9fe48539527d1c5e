"""One promotion at a time per registry, across processes and hosts.

MLflow has no compare-and-set on aliases, so a promotion's read-decide-write (read @champion,
run the gate, write the history, move the aliases) runs whole under a lock. Which lock depends
on what the writers share:

- A local store (`sqlite:///…` or a folder): an `fcntl.flock` on a file beside the store. Every
  writer opens that same file, and the kernel drops the lock when its holder dies, even by
  SIGKILL, so a crash never leaves it held.
- A tracking server (`http(s)://…`): writers may sit on many hosts and share only the server.
  The lock is a registered model named `<name>.promotion-lock`. Creating a registered model is
  atomic in every MLflow store (the name is unique in the database), so exactly one creator
  wins and the others get RESOURCE_ALREADY_EXISTS and wait. A tag written and re-read would not
  do: two writers can each read back their own value between the other's write and read. The
  lock model carries its owner and an expiry (tags); a holder killed mid-promotion leaves it
  behind, and a waiter deletes it once expired. The holder re-reads its owner tag before every
  registry write (`verify`), so a holder whose lock was broken stops instead of writing.
  The remaining window (a holder that stalls past the expiry between `verify` and one write) is
  why the expiry is far longer than a promotion takes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

LOCK_SUFFIX = ".promotion-lock"
EXPIRY_SECONDS = 120.0  # a promotion is a handful of registry calls: seconds, not minutes
WAIT_SECONDS = 300.0


class LockLost(RuntimeError):
    """Another writer broke this lock as expired; the promotion stops before writing more."""


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[_FileLock]:
        with open(self.path, "a") as handle:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"Promotion lock {self.path} still held after {timeout:.0f} s") from None
                    time.sleep(0.05)
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def verify(self) -> None:
        """The kernel holds this lock for us until we let go; nothing to re-check."""


class _RegistryLock:
    def __init__(self, client: MlflowClient, name: str) -> None:
        self.client, self.name = client, name + LOCK_SUFFIX
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[_RegistryLock]:
        deadline = time.monotonic() + timeout
        while not self._try_create():
            self._break_if_expired()
            if time.monotonic() > deadline:
                raise TimeoutError(f"Promotion lock {self.name!r} still held after {timeout:.0f} s")
            time.sleep(0.2)
        try:
            yield self
        finally:
            with contextlib.suppress(MlflowException, LockLost):
                self.verify()
                self.client.delete_registered_model(self.name)

    def _try_create(self) -> bool:
        holder = json.dumps({"owner": self.owner, "expires": time.time() + EXPIRY_SECONDS})
        description = "Held while a promotion of the model runs; deleted when it ends. Safe to delete if its expiry has passed."
        try:
            self.client.create_registered_model(self.name, tags={"holder": holder}, description=description)
            return True
        except MlflowException as error:
            # A taken name fails the insert, and the store then re-reads the model to word its
            # error: if the holder deleted it in between, that re-read answers "does not exist".
            # Either way the lock was held when we tried; wait and try again.
            if error.error_code in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                return False
            raise

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.client.get_registered_model(self.name).tags.get("holder", "null"))
        except MlflowException:
            return None

    def _break_if_expired(self) -> None:
        holder = self._holder()
        if holder and holder["expires"] < time.time():
            with contextlib.suppress(MlflowException):
                self.client.delete_registered_model(self.name)

    def verify(self) -> None:
        holder = self._holder()
        if not holder or holder["owner"] != self.owner:
            raise LockLost(f"Promotion lock {self.name!r} expired and was taken by {holder and holder['owner']}; nothing more written")


def local_store_path(registry_uri: str) -> Path | None:
    """The file or folder of a local store, or None for a server."""
    parsed = urlparse(registry_uri)
    if parsed.scheme == "sqlite":  # SQLAlchemy: sqlite:///relative.db, sqlite:////absolute.db
        database = unquote(parsed.path)[1:]
        return Path(database).resolve() if database not in ("", ":memory:") else None
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path)).resolve()
    return None


@contextlib.contextmanager
def promotion_lock(client: MlflowClient, name: str, timeout: float = WAIT_SECONDS) -> Iterator[_FileLock | _RegistryLock]:
    """Hold the registry's promotion lock for `name`; yields a lock whose `verify()` the holder
    calls before each write."""
    store = local_store_path(mlflow.get_registry_uri())
    if store is not None:
        lock_file = store.with_name(store.name + LOCK_SUFFIX) if store.suffix == ".db" else store / LOCK_SUFFIX
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock: _FileLock | _RegistryLock = _FileLock(lock_file)
    else:
        lock = _RegistryLock(client, name)
    with lock.held(timeout) as held:
        yield held
