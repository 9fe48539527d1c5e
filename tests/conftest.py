"""Shared fixtures: tiny generated datasets, a real MLflow sqlite store, a real Prefect API."""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.config import DataConfig
from components.data import demo_data

TINY_SIZE = 32  # ResNet50's smallest input
TESTS = Path(__file__).resolve().parent
REAPER = TESTS.parent / "infra" / "local" / "reaper.py"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def pytest_configure(config: pytest.Config) -> None:
    """Whatever this run starts dies with it, even when the runner is SIGKILLed (CI timeout,
    Ctrl-C twice): a reaper in its own session remembers every descendant of this process and
    ends them once it is gone (infra/local/reaper.py)."""
    if os.environ.get("DETECTOR_REAPER_OWNER") != str(os.getpid()):
        os.environ["DETECTOR_REAPER_OWNER"] = str(os.getpid())  # one reaper per runner, none per child pytest's import
        subprocess.Popen(
            [sys.executable, str(REAPER), str(os.getpid()), "--descendants"],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    # The `mlflow server`s tests start run as the project's do (infra/local/services.sh, the
    # image's entrypoint): without MLflow's job runners, seven processes that cost each server
    # 16 s of CPU on this 2-core machine. The stack test checks services.sh's own default.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


# Tiers (pyproject markers), cheapest first: code (pure functions, static checks of images and
# manifests), data (datasets, shards, S3), model (a trained tiny ResNet50), flows (Prefect and
# KFP runs), services (real servers and the whole local stack). Folders say the tier; the
# fault-injection tests sit in the tier of what they break. `pytest -m "code or data"` runs the
# first two in a couple of minutes.
FOLDER_TIERS = {
    **dict.fromkeys(("code", "bench", "infra"), "code"),
    "data": "data",
    "model": "model",
    **dict.fromkeys(("flows", "kfp"), "flows"),
    "services": "services",
}
FAULT_TIERS = {
    "test_fuzz": "data",
    "test_input_guard": "data",
    "test_kill_shard": "data",
    "test_s3_integrity": "data",
    "test_s3_keys": "data",
    "test_shard_race": "data",
    "test_validate_kill": "data",
    "test_kill_register": "model",
    "test_kill_train": "model",
    "test_model_loading": "model",
    "test_promotion_race": "model",
    "test_registry_lock": "services",
    "test_servers_die_with_runner": "services",
    "hold_servers": "services",  # the runner test_servers_die_with_runner starts and kills
}


def _tier(folder: str, module: str) -> str:
    tier = FAULT_TIERS.get(module) if folder == "faults" else FOLDER_TIERS.get(folder)
    if tier is None:
        raise pytest.UsageError(f"tests/{folder}/{module}.py has no tier: add it to FOLDER_TIERS or FAULT_TIERS in tests/conftest.py")
    return tier


# Modules whose module- or session-scoped fixture builds something costly (a whole stack and a
# deployment run, a compare flow, an 8-epoch model, the JAX process, a server, a compiled
# pipeline, a Ray cluster): each runs on one xdist worker, which builds it once, instead of on every worker that
# draws one of its tests.
ONE_WORKER_MODULES = frozenset(
    f"tests/{module}.py"
    for module in (
        "services/test_stack",
        "flows/test_pipeline",
        "model/test_behavioral",
        "model/test_backends",
        "model/test_serving_model",
        "model/test_service",
        "faults/test_registry_lock",
        "kfp/test_compile",
        "data/test_engine",
    )
)


def _module(nodeid: str) -> str:
    return nodeid.partition("::")[0]


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test with its tier. Runs the slow tests first, so parallel workers start on the
    long ones and the short ones fill the gaps, instead of one long test ending the run alone;
    first of all the ONE_WORKER_MODULES, each the longest chain one worker runs."""
    for item in items:
        where = item.path.relative_to(TESTS)
        item.add_marker(_tier(where.parts[0], item.path.stem))
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, _module(item.nodeid) not in ONE_WORKER_MODULES))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`-n N` (xdist's `load`) hands each worker a quarter of the suite round-robin up front and
    splits modules across workers. This hands out one test, or one ONE_WORKER_MODULES module, at
    a time, in collection order (slow first), to whichever worker is nearly idle: the long tests
    spread over the workers and no worker ends the run with a queue of them. (xdist's own
    `loadgroup` would group, but its renaming of node ids is lost under pytest 9.2.)"""
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            return module if module in ONE_WORKER_MODULES else nodeid

    if config.getoption("dist") != "load":
        return None  # another --dist mode was asked for
    config.option.loadscopereorder = False  # keep the slow-first order, not largest-module-first
    return OneWorkerModules(config, log)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, the first line of defence."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_server(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A server in its own process group (so stop_server ends its workers too) that gets SIGTERM
    if this process dies; the session's reaper ends the rest of its group."""
    with open(log_path, "a") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent)


def stop_server(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the whole group, SIGKILL after `grace` seconds."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session", autouse=True)
def _jax_compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The JAX processes the tests start compile the same ResNet50 steps again and again (train,
    crash, resume; train, then serve): JAX's persistent cache, shared by this run's workers,
    compiles each once."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(root / "jax-cache")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


@pytest.fixture(autouse=True)
def _isolated_environment():
    """Entrypoints fill os.environ from mlflow.env; keep that from leaking into the next test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo dataset small enough for seconds-long tests, defects included. Treat as read-only."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    demo_data.run(demo_data.DemoDataConfig(out_dir=str(root), train_per_class=24, test_per_class=6, image_size=TINY_SIZE))
    return root


@pytest.fixture
def tiny_data_config(tiny_dataset: Path) -> DataConfig:
    return DataConfig(root=str(tiny_dataset), image_size=TINY_SIZE, encoding="png", images_per_shard=8)


@pytest.fixture
def manifest_path(tiny_data_config: DataConfig, tmp_path: Path) -> str:
    """Validated and sharded tiny data under tmp_path/work, ready to train on."""
    from components.data import shard, validate

    work_dir = str(tmp_path / "work")
    validated = validate.run(validate.ValidateConfig(data=tiny_data_config, work_dir=work_dir))
    config = shard.ShardConfig(
        data=tiny_data_config, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=work_dir
    )
    return shard.run(config).manifest_path


@pytest.fixture(scope="session")
def _empty_tracking_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite database with its schema in place: creating one runs every migration
    (~5 s), copying one takes milliseconds."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates the tables and the Default experiment
    return path


@contextmanager
def tracking_at(uri: str) -> Iterator[str]:
    """MLflow pointed at this store, in this process and (through the environment variable, which
    entrypoints read) in the processes it starts; both undone on exit."""
    import mlflow

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(None)


@pytest.fixture
def tracking_store(tmp_path: Path, _empty_tracking_database: Path) -> str:
    """A real MLflow sqlite store per test."""
    import mlflow

    shutil.copyfile(_empty_tracking_database, tmp_path / "mlflow.db")
    with tracking_at(f"sqlite:///{tmp_path / 'mlflow.db'}") as uri:
        # MLflow remembers the active experiment id process-wide; an earlier test's id may not exist here.
        mlflow.set_experiment(experiment_id="0")
        yield uri


@pytest.fixture(scope="session")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Poll until the server answers; fail early if it died, and never wait past the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """moto's standalone server: a real S3-compatible HTTP endpoint on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = start_server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, server)
        yield url
    finally:
        stop_server(server)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (and MLflow's artifact client) at the loopback S3 server."""
    for key, value in {
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    return s3_endpoint


def shared_across_workers(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], dict]) -> dict:
    """A session fixture's JSON-able value built once per test run, not once per xdist worker:
    the first worker builds it in a folder every worker sees (the run's shared temp root), under
    a lock; the others wait for it and read what it wrote."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-of-…/pytest-N, shared by this run's workers
    folder, done = root / name, root / f"{name}.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            folder.mkdir(exist_ok=True)
            done.write_text(json.dumps(build(folder)))
    return json.loads(done.read_text())


@dataclass(frozen=True)
class TrainedRun:
    """The tiny improved model the model tests share: validated, sharded, trained (2 epochs),
    evaluated and registered as @champion of `registered_model`, in its own MLflow store."""

    store: str
    data: DataConfig
    manifest_path: str
    config: dict
    trained: dict
    evaluated: dict
    registered_model: str = "tiny-detector"


def _train_tiny_run(folder: Path, dataset: Path, template: Path) -> dict:
    import mlflow

    from components.config import build_config
    from components.data import shard, validate
    from components.evaluation import evaluate
    from components.registry import register
    from components.training import train

    shutil.copyfile(template, folder / "mlflow.db")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    data = DataConfig(root=str(dataset), image_size=TINY_SIZE, encoding="png", images_per_shard=8)
    work_dir = str(folder / "work")
    fit = {"epochs": 2, "batch_size": 16, "precise_bn_batches": 2}
    overrides = {"data": data.model_dump(), "work_dir": work_dir, "variant": {"fit": fit}}
    with tracking_at(store):
        mlflow.set_experiment(experiment_id="0")
        validated = validate.run(validate.ValidateConfig(data=data, work_dir=work_dir))
        fingerprint = validated.dataset_fingerprint
        sharded = shard.run(
            shard.ShardConfig(data=data, report_path=validated.report_path, dataset_fingerprint=fingerprint, work_dir=work_dir)
        )
        config = train.TrainConfig(pipeline=build_config("improved", "demo", overrides), manifest_path=sharded.manifest_path)
        trained = train.run(config)
        evaluated = evaluate.run(
            evaluate.EvaluateConfig(
                manifest_path=sharded.manifest_path, model_path=trained.model_path, run_id=trained.run_id, output_dir=str(folder / "eval")
            )
        )
        register.run(
            register.RegistryConfig(
                registered_model=TrainedRun.registered_model,
                model_uri=trained.model_uri,
                run_id=trained.run_id,
                variant="improved",
                dataset_fingerprint=sharded.dataset_fingerprint,
                threshold=evaluated.threshold,
                metrics=evaluated.test,
            )
        )
    return {
        "store": store,
        "data": data.model_dump(mode="json"),
        "manifest_path": sharded.manifest_path,
        "config": config.model_dump(mode="json"),
        "trained": trained.model_dump(mode="json"),
        "evaluated": evaluated.model_dump(mode="json"),
    }


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path, _empty_tracking_database: Path) -> TrainedRun:
    build = lambda folder: _train_tiny_run(folder, tiny_dataset, _empty_tracking_database)  # noqa: E731
    value = shared_across_workers(tmp_path_factory, "trained-run", build)
    return TrainedRun(**{**value, "data": DataConfig(**value["data"])})


@pytest.fixture
def trained_store(trained_run: TrainedRun) -> str:
    """This test reads (and may add to) the shared run's MLflow store."""
    with tracking_at(trained_run.store) as uri:
        yield uri
