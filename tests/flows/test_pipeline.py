"""The flows through a real Prefect API (prefect_test_harness) and a real MLflow sqlite store."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from components import record, settings
from components.config import build_config
from components.registry.register import CHALLENGER, CHAMPION
from tests.conftest import free_port, tracking_at

REPO = Path(__file__).resolve().parents[2]


def test_flows_and_the_modules_they_wire_with_do_not_import_tensorflow():
    modules = ["flows.pipeline", "flows.quality", "components.wiring", "components.record", "components.contracts"]
    modules += ["components.data.schema", "components.data.reader"]
    probe = f"import sys, {', '.join(modules)}; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], cwd=REPO).returncode == 0


def test_bad_config_fails_before_any_work(prefect_api, tmp_path: Path):
    from flows.pipeline import train_pipeline

    with pytest.raises(ValueError, match=r"image_size=8"):
        train_pipeline(variant="baseline", overrides={"data": {"image_size": 8}, "work_dir": str(tmp_path / "work")})
    assert not (tmp_path / "work").exists()


def _tiny_overrides(dataset: Path, tmp_path: Path, registered_model: str) -> dict:
    """One epoch on the tiny dataset, registering under a name of the test's own."""
    return {
        "data": {"root": str(dataset), "image_size": 32, "images_per_shard": 16},
        "variant": {"fit": {"epochs": 1, "batch_size": 16}},
        "work_dir": str(tmp_path / "work"),
        "tracking": {"registered_model": registered_model},
    }


@dataclass(frozen=True)
class Compared:
    outcome: object  # ComparisonSummary
    overrides: dict
    store: str
    root: Path


VARIANTS = ["baseline", "improved", "npr"]


@pytest.fixture(scope="module")
def compared(prefect_api, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory, _empty_tracking_database: Path) -> Compared:
    """One compare flow (three variants, one epoch) in its own MLflow store, which the skip test
    then retrains against: a registry that already holds these shards and configs. Its held-out
    set `echo` is the test split's own folder, so its figures must equal the test split's."""
    from flows.pipeline import compare_variants

    root = tmp_path_factory.mktemp("compare")
    shutil.copyfile(_empty_tracking_database, root / "mlflow.db")
    store = f"sqlite:///{root / 'mlflow.db'}"
    overrides = _tiny_overrides(tiny_dataset, root, "flow-test-detector")
    overrides["data"]["test_sets"] = {"echo": str(tiny_dataset / "test")}
    with tracking_at(store):
        outcome = compare_variants(profile="demo", overrides=overrides, variants=VARIANTS)
    return Compared(outcome, overrides, store, root)


@pytest.fixture
def compared_store(compared: Compared) -> str:
    with tracking_at(compared.store) as uri:
        yield uri


@pytest.mark.slow
def test_compare_flow_trains_registers_and_tabulates_every_variant(compared: Compared, compared_store: str, tiny_dataset: Path):
    from prefect import get_client

    outcome, overrides = compared.outcome, compared.overrides
    client = MlflowClient()
    children = {}
    for variant, result in outcome.results.items():
        run = client.get_run(result.trained.run_id)
        children[variant] = run
        assert run.info.run_name == variant and run.data.tags["variant"] == variant
        assert run.data.tags["mlflow.parentRunId"] == outcome.parent_run_id
        assert "test/auc" in run.data.metrics and "test_tuned/f1" in run.data.metrics
        # The same images through the held-out path: the same figures.
        assert run.data.metrics["generalisation/echo/auc"] == run.data.metrics["test/auc"] == run.data.metrics["generalisation/mean_auc"]
        assert run.data.tags["mlflow.note.content"].startswith(f"**{variant}**")
        contexts = {tag.value for item in run.inputs.dataset_inputs for tag in item.tags if tag.key == "mlflow.data.context"}
        assert contexts == {"train", "val", "test"}
        assert {item.dataset.digest for item in run.inputs.dataset_inputs} == {result.sharded.dataset_fingerprint}
        assert {item.path for item in client.list_artifacts(run.info.run_id, "plots")} >= {
            "plots/learning_curves.png",
            "plots/confusion_matrix.png",
            "plots/roc.png",
            "plots/precision_recall.png",
            "plots/generalisation.png",
        }
        assert {item.path for item in client.list_artifacts(run.info.run_id, "evaluation")} >= {"evaluation/generalisation.csv"}
    assert set(children["baseline"].data.params) == set(children["npr"].data.params), "the UI's compare view lines them up"
    assert children["npr"].data.params["parameters_trainable"] == "1437761"
    versions = client.search_model_versions("name='flow-test-detector'")
    assert sorted(str(version.version) for version in versions) == ["1", "2", "3"]
    aliases = {name: str(version) for name, version in client.get_registered_model("flow-test-detector").aliases.items()}
    last = outcome.results["npr"].registered
    assert aliases[CHAMPION] == last.champion_version and aliases.get(CHALLENGER) != aliases[CHAMPION]
    assert last.version == (aliases[CHAMPION] if last.promoted else aliases[CHALLENGER])
    table = Path(outcome.comparison.table_path).read_text().splitlines()
    assert table[0] == "metric,baseline,improved,npr,improved_vs_baseline_pct,npr_vs_baseline_pct"
    rows = [line.split(",")[0] for line in table[1:]]
    assert rows[:3] == ["test/accuracy", "test/auc", "test/pr_auc"] and "test_tuned/f1" in rows
    assert rows[-6:] == [
        "calibration/ece",
        "robust/worst_auc",
        "generalisation/echo/accuracy",
        "generalisation/echo/auc",
        "generalisation/echo/fakes_caught",
        "generalisation/mean_auc",
    ]
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == f"compare · {tiny_dataset.name} · demo"
    for variant in VARIANTS:
        assert parent.data.metrics[f"{variant}/test/auc"] == pytest.approx(children[variant].data.metrics["test/auc"], abs=1e-4)

    async def states_of_this_execution() -> list[str]:
        async with get_client() as api:
            runs = await api.read_flow_runs()
        ours = [run for run in runs if (run.parameters.get("overrides") or {}).get("work_dir") == overrides["work_dir"]]
        return [run.state.type.value for run in ours]

    assert asyncio.run(states_of_this_execution()) == ["COMPLETED"] * 4  # the compare flow and its three pipelines


@pytest.mark.slow
def test_what_the_store_says_is_what_ran(compared: Compared, compared_store: str):
    """Descriptions from the effective config, per-image validation scores for the gate, the
    threshold on both scales, and a displaced champion that says so."""
    client = MlflowClient()
    runs = {variant: client.get_run(result.trained.run_id) for variant, result in compared.outcome.results.items()}
    baseline_summary = runs["baseline"].data.tags["model_summary"]
    assert "trained from scratch" in baseline_summary and "fine-tuned" not in baseline_summary  # demo: backbone_weights=none
    assert "backbone frozen" in baseline_summary  # the demo baseline trains only its head
    configs = {variant: build_config(variant, "demo", compared.overrides) for variant in ("baseline", "improved")}
    changed = {row["setting"] for row in record.changed_settings(configs)}
    note = runs["improved"].data.tags["mlflow.note.content"]
    listed = {line.split("`")[1].removeprefix("variant.") for line in note.splitlines() if line.startswith("- `")}
    assert listed and "fit.epochs" not in listed and "fit.precise_bn_batches" not in listed  # the demo profile sets both alike
    assert listed == changed
    for variant, run in runs.items():
        scores = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/evaluation/val_scores.csv"))
        assert len(scores) == compared.outcome.results[variant].sharded.counts["val"] and scores["source"].is_unique
        assert set(scores["generated"]) == {0, 1} and scores["p_ai_generated"].between(0, 1).all()
    versions = {
        str(version.version): client.get_model_version("flow-test-detector", version.version)
        for version in client.search_model_versions("name='flow-test-detector'")
    }
    for version in versions.values():
        assert float(version.tags["threshold_p_ai"]) == pytest.approx(1 - float(version.tags["threshold_p_real"]), abs=1e-4)
        assert "Gate: val/auc_final, paired bootstrap" in version.description and "P(AI-generated) >" in version.description
        assert "| generalisation/echo/auc |" in version.description and "| generalisation/mean_auc |" in version.description
    assert "NPR" in runs["npr"].data.tags["model_summary"]
    # NPR serves as the others do: the registered serving model, image bytes in, a verdict out.
    npr = compared.outcome.results["npr"].registered
    served = mlflow.pyfunc.load_model(f"models:/flow-test-detector/{npr.version}")
    image = next(Path(compared.overrides["data"]["root"]).glob("test/FAKE/*.png"))
    answer = served.predict(pd.DataFrame({"image": [image.read_bytes()]})).iloc[0]
    assert 0 <= answer["p_ai_generated"] <= 1 and answer["verdict"] in ("AI-generated", "real") and answer["model_version"] == npr.version
    improved = compared.outcome.results["improved"].registered
    if improved.promoted:
        assert versions["1"].tags["decision"] == "superseded by v2" and "**Superseded by v2**" in versions["1"].description
    else:
        assert versions["1"].tags["decision"] in ("promoted", "superseded by v3") and "the champion stays" in versions["2"].description


def test_prefect_yaml_deploys_the_named_deployments(prefect_api, tmp_path: Path):
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_HOME": str(tmp_path / "home"), "COLUMNS": "250"}

    def prefect(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True, text=True)

    assert prefect("work-pool", "create", "detector-pool", "--type", "process", "--overwrite").returncode == 0
    deployed = prefect("--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    listing = prefect("deployment", "ls").stdout
    expected = (
        "detector-pipeline/train-baseline",
        "detector-pipeline/train-improved",
        "detector-compare/compare-variants",
        "detector-score/score-folder",
    )
    for name in (*expected, "detector-stage/cpu", "detector-stage/gpu"):
        assert name in listing, listing
    improved = prefect("deployment", "inspect", "detector-pipeline/train-improved").stdout
    assert "0 3 * * 1" in improved and "detector-pool" in improved
    scoring = prefect("deployment", "inspect", "detector-score/score-folder").stdout
    assert "0 6 * * *" in scoring and "'active': False" in scoring, "the scoring schedule waits until it is pointed at real data"


@pytest.mark.slow
def test_unchanged_data_and_config_skip_training_unless_forced(compared: Compared, compared_store: str, tmp_path: Path):
    from flows.pipeline import train_pipeline

    first = compared.outcome.results["baseline"]
    # A scheduled run on another worker has no local cache: only the registry can tell it nothing changed.
    overrides = {**compared.overrides, "work_dir": str(tmp_path / "elsewhere")}
    second = train_pipeline(variant="baseline", overrides=overrides)
    assert not first.skipped and second.skipped
    assert second.reused.version == first.registered.version and second.run_id == first.trained.run_id
    assert not (tmp_path / "elsewhere" / "runs").exists()
    forced = train_pipeline(variant="baseline", overrides=overrides, force=True)
    assert not forced.skipped and forced.trained.run_id != first.trained.run_id


def test_pipeline_against_a_dead_tracking_server_fails_before_any_work(tiny_data_config, tmp_path, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    overrides = {"data": tiny_data_config.model_dump(), "work_dir": str(tmp_path / "work")}

    from flows.pipeline import train_pipeline

    with pytest.raises(settings.TrackingUnavailable, match="unreachable") as failure:
        train_pipeline.fn("improved", "demo", overrides)
    assert dead in str(failure.value)
    assert not (tmp_path / "work").exists()
