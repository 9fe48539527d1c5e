"""The promotion lock that writers sharing only a tracking server use: a registered model as the
lock, against a real `mlflow server` on loopback (test_promotion_race covers the file lock of a
local store with racing processes)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from components.registry.promotion_lock import LOCK_SUFFIX, LockLost, _RegistryLock, promotion_lock
from tests.conftest import free_port, start_server, stop_server, wait_for_http

pytestmark = pytest.mark.services
HOLDERS, ROUNDS = 3, 2


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory: pytest.TempPathFactory, _empty_tracking_database: Path):
    store = tmp_path_factory.mktemp("lock-server")
    shutil.copyfile(_empty_tracking_database, store / "mlflow.db")  # no migrations at start-up
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination", str(store / "artifacts")]
    # Job consumers are not what is tested here, and cost start-up time.
    server = start_server(command, store / "server.log", env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(server)


@pytest.fixture
def name(server_uri: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_uri)
    mlflow.set_tracking_uri(server_uri)
    yield f"locked-{uuid.uuid4().hex[:8]}"
    mlflow.set_tracking_uri(None)


def _lock_models(name: str) -> list[str]:
    return [model.name for model in MlflowClient().search_registered_models(f"name = '{name}{LOCK_SUFFIX}'")]


def test_holders_on_one_server_never_overlap_and_leave_no_lock(name: str):
    """Each holder does a read-modify-write of a shared counter inside the lock, as a promotion
    reads @champion and moves it: any overlap loses an update and raises the peak above one."""
    shared = {"counter": 0, "inside": 0, "peak": 0}
    bookkeeping = threading.Lock()
    start = threading.Barrier(HOLDERS)
    failures: list[BaseException] = []

    def promote() -> None:
        try:
            start.wait()
            for _ in range(ROUNDS):
                with promotion_lock(MlflowClient(), name, timeout=120) as lock:
                    with bookkeeping:
                        shared["inside"] += 1
                        shared["peak"] = max(shared["peak"], shared["inside"])
                    seen = shared["counter"]
                    lock.verify()  # a registry round trip between the read and the write, as in the gate
                    shared["counter"] = seen + 1
                    with bookkeeping:
                        shared["inside"] -= 1
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=promote) for _ in range(HOLDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    assert (shared["peak"], shared["counter"]) == (1, HOLDERS * ROUNDS)
    assert _lock_models(name) == [], "every holder deleted its lock"


def _plant_lock(name: str, expires_in: float) -> None:
    """The lock a holder killed mid-promotion leaves behind."""
    holder = json.dumps({"owner": "gone-host:1:dead", "expires": time.time() + expires_in})
    MlflowClient().create_registered_model(name + LOCK_SUFFIX, tags={"holder": holder})


def test_a_lock_left_by_a_killed_holder_is_broken_once_expired(name: str):
    _plant_lock(name, expires_in=-1.0)
    with promotion_lock(MlflowClient(), name, timeout=30) as lock:
        lock.verify()
    assert _lock_models(name) == []


def test_a_live_holders_lock_is_waited_for_not_broken(name: str):
    _plant_lock(name, expires_in=300.0)
    with pytest.raises(TimeoutError, match=f"{name}{LOCK_SUFFIX}"), promotion_lock(MlflowClient(), name, timeout=1.0):
        pass
    assert _lock_models(name) == [name + LOCK_SUFFIX]


def test_a_holder_whose_lock_was_taken_over_writes_nothing_more(name: str):
    client = MlflowClient()
    with promotion_lock(client, name, timeout=30) as lock:
        assert isinstance(lock, _RegistryLock)
        client.delete_registered_model(name + LOCK_SUFFIX)  # broken as expired by a waiter, which then took it
        _plant_lock(name, expires_in=300.0)
        with pytest.raises(LockLost, match="gone-host:1:dead"):
            lock.verify()
    assert _lock_models(name) == [name + LOCK_SUFFIX], "the new holder's lock is left alone"


def test_a_lock_released_while_the_create_reports_it_taken_is_waited_for(tmp_path: Path, _empty_tracking_database: Path):
    """The race three holders hit: the insert fails on the taken name, the holder deletes its lock,
    then MLflow's store re-reads the name to word the error and answers RESOURCE_DOES_NOT_EXIST.
    A SQLite trigger replays that interleaving: it refuses the insert as the taken name would,
    with no row left to re-read."""
    import sqlite3

    shutil.copyfile(_empty_tracking_database, tmp_path / "mlflow.db")
    lock = _RegistryLock(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), "raced")
    with sqlite3.connect(tmp_path / "mlflow.db") as database:
        database.execute(
            "CREATE TRIGGER taken_then_released BEFORE INSERT ON registered_models WHEN NEW.name = 'raced.promotion-lock' "
            "BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: registered_models.name'); END"
        )
    assert lock._try_create() is False  # held when we tried: wait, not fail the promotion
    with sqlite3.connect(tmp_path / "mlflow.db") as database:
        database.execute("DROP TRIGGER taken_then_released")
    assert lock._try_create() is True
