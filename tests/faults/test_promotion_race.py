"""Two registrations at once, as two real processes on one real MLflow store: the better model
ends as @champion, and the history and aliases agree with each other."""

from __future__ import annotations

import json

import keras
import mlflow
import pytest
from mlflow import MlflowClient

from components.registry.register import CHALLENGER, CHAMPION, HISTORY_TAG, PREVIOUS, RegistryConfig
from components.registry.register import run as register
from tests.faults.racing import race

NAME = "raced-detector"


def _config(auc: float) -> RegistryConfig:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    with mlflow.start_run() as active:
        info = mlflow.keras.log_model(model, name="model", pip_requirements=["keras"])
    return RegistryConfig(
        registered_model=NAME,
        model_uri=info.model_uri,
        run_id=active.info.run_id,
        variant=f"auc-{auc}",
        dataset_fingerprint="data-a",
        threshold=0.5,
        metrics={"val/auc_final": auc, "test/auc": auc},
    )


def test_racing_registrations_promote_the_better_model(tracking_store, tmp_path):
    register(_config(0.70))
    client = MlflowClient()
    for round_number in range(1):  # raise to repeat the race; one round keeps CI short
        folder = tmp_path / f"round-{round_number}"
        folder.mkdir()
        better, worse = 0.90 + round_number / 100, 0.80 + round_number / 100
        arguments = []
        for auc in (worse, better):
            path = folder / f"{auc}.json"
            path.write_text(_config(auc).model_dump_json())
            arguments.append(["--config", str(path)])
        outcomes = race("components.registry.register", arguments, folder, env={"MLFLOW_TRACKING_URI": tracking_store})
        assert all(code == 0 for code, _, _ in outcomes), [err[-2000:] for _, _, err in outcomes]
        model = client.get_registered_model(NAME)
        champion = client.get_model_version(NAME, model.aliases[CHAMPION])
        assert json.loads(champion.tags["metrics"])["test/auc"] == pytest.approx(better)
        history = json.loads(model.tags[HISTORY_TAG])
        assert history[-1] == str(model.aliases[CHAMPION]) and str(model.aliases[PREVIOUS]) == history[-2]
        assert model.aliases.get(CHALLENGER) != model.aliases[CHAMPION]
