"""Shared fixtures: tiny generated datasets, a real MLflow sqlite store, a real Prefect API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components import demo_data
from components.config import DataConfig

TINY_SIZE = 32  # ResNet50's smallest input


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
def tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real MLflow sqlite store per test; the environment variable is what entrypoints read."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
