"""components/contracts: the typed Configs, Results, Manifest and summary stages exchange, and the
one stage table the CLI, the flows and the KFP runner share."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from components import cli, kfp_stage, wiring
from components.config import DEFAULT_REGISTERED_MODEL, KEY_NEUTRAL, PipelineConfig, build_config, fingerprint
from components.contracts import (
    PIPELINE_STAGES,
    REUSED_DECISION,
    STAGES,
    CompareConfig,
    EvaluateConfig,
    EvaluateResult,
    Manifest,
    PipelineSummary,
    RegisteredVersion,
    RegistryConfig,
    RegistryResult,
    ShardResult,
    TrainResult,
    ValidateResult,
)
from components.data.images import ImageJob

REPO = Path(__file__).resolve().parents[2]

# A manifest as components/data/shard.py wrote it before the Manifest model existed: same keys, same order.
LEGACY_MANIFEST = {
    "version": 1,
    "shard_key": "a" * 16,
    "dataset_fingerprint": "f" * 16,
    "created": "2026-01-01T00:00:00+00:00",
    "source": {"root": "/data/set", "validation_report": "/work/validated/report.csv"},
    "class_names": ["FAKE", "REAL"],
    "labels": {"FAKE": 0, "REAL": 1},
    "positive_class": "REAL",
    "generated_class": "FAKE",
    "image_size": 64,
    "fit": "resize",
    "encoding": {"codec": "jpeg", "jpeg_quality": 95},
    "split": {"seed": 42, "val_fraction": 0.2, "stratified": True},
    "augmentation": {
        "policy": {"rotation_degrees": 15.0, "shift_fraction": 0.1, "horizontal_flip": True, "jpeg_quality_range": [30, 100]},
        "applied": "live",
        "premade_copies": 0,
        "splits": ["train"],
    },
    "splits": {
        "train": {"files": ["train-00000-of-00001.tfrecord"], "count": 3, "per_class": {"FAKE": 1, "REAL": 2}, "skipped": {}},
        "test": {"files": ["test-00000-of-00001.tfrecord"], "count": 1, "per_class": {"FAKE": 1, "REAL": 0}, "skipped": {"x.png": "bad"}},
    },
}

VALIDATED = ValidateResult(report_path="/w/report.csv", quarantine_dir="/w/q", dataset_fingerprint="f" * 16, usable={}, statuses={})
SHARDED = ShardResult(manifest_path="/w/shards/k/manifest.json", shard_key="k" * 16, dataset_fingerprint="f" * 16, counts={}, reused=False)
TRAINED = TrainResult(
    run_id="r" * 32,
    experiment_id="1",
    model_path="/w/runs/improved-k/model.keras",
    model_uri="runs:/r/model",
    epochs_completed=2,
    resumed_at_epoch=0,
    reused=False,
    final_metrics={},
)
EVALUATED = EvaluateResult(metrics_path="/w/metrics.json", positive_class="REAL", threshold=0.4, test={"test/auc": 0.8})
REGISTERED = RegistryResult(registered_model="m", version="2", promoted=True, decision="promoted", champion_version="2")
REUSED = RegisteredVersion(registered_model="m", version="1", run_id="s" * 32, metrics={"test/auc": 0.7}, threshold=0.5)
COMMON = {"variant": "improved", "positive_class": "REAL", "validated": VALIDATED, "sharded": SHARDED}


def test_manifest_round_trip_writes_the_legacy_bytes(tmp_path: Path):
    legacy = tmp_path / "legacy.json"
    legacy.write_text(json.dumps(LEGACY_MANIFEST, indent=2))
    manifest = Manifest.read(legacy)
    manifest.write(tmp_path / "manifest.json")
    assert (tmp_path / "manifest.json").read_bytes() == legacy.read_bytes(), "published sets and their sizes stay valid"
    assert Manifest.read(tmp_path / "manifest.json") == manifest
    assert manifest.counts == {"train": 3, "test": 1} and manifest.splits["test"].skipped == {"x.png": "bad"}
    assert manifest.paths("train", "/shards") == ["/shards/train-00000-of-00001.tfrecord"]


def test_manifest_read_names_the_missing_field_and_an_unknown_split(tmp_path: Path):
    broken = tmp_path / "manifest.json"
    broken.write_text(json.dumps({key: value for key, value in LEGACY_MANIFEST.items() if key != "image_size"}))
    with pytest.raises(ValueError, match="image_size"):
        Manifest.read(broken)
    with pytest.raises(ValueError, match="split='val'"):
        Manifest.model_validate(LEGACY_MANIFEST).entry("val")


def test_a_manifest_written_before_fit_existed_reads_as_resized():
    older = {key: value for key, value in LEGACY_MANIFEST.items() if key != "fit"}
    assert Manifest.model_validate(older).fit == "resize"


def test_stage_configs_are_typed_models_built_from_typed_results():
    cfg = build_config("improved", "demo", {"work_dir": "/w"})
    upstream = {"validated": VALIDATED, "sharded": SHARDED, "trained": TRAINED, "evaluated": EVALUATED}
    for name in PIPELINE_STAGES:
        assert isinstance(wiring.stage_config(name, cfg, **upstream), STAGES[name].config)
    registered = wiring.stage_config("register", cfg, **upstream)
    # The skip key hashes the variant as it was before fields were added at their neutral values.
    before = cfg.variant.model_dump()
    for section, field in KEY_NEUTRAL:
        del before[section][field]
    assert registered.config_key == fingerprint(SHARDED.shard_key, before), "the registry's skip key is unchanged"


def test_the_execution_engine_reaches_validate_and_shard_only():
    cfg = build_config("improved", "demo", {"work_dir": "/w", "execution": {"engine": "ray"}})
    assert build_config("improved", "demo", {"work_dir": "/w"}).execution.engine == "local"
    for name in ("validate", "shard"):
        assert wiring.stage_config(name, cfg, validated=VALIDATED).engine == "ray"


def test_a_missing_upstream_result_fails_at_build_time_naming_it():
    cfg = build_config("improved", "demo", {"work_dir": "/w"})
    with pytest.raises(ValueError, match="needs the trained result"):
        wiring.stage_config("evaluate", cfg, sharded=SHARDED)


def test_a_renamed_field_fails_at_build_time_naming_both_names():
    with pytest.raises(ValidationError) as caught:
        EvaluateConfig(manifest_path="/m.json", model_file="/model.keras")
    assert "model_path" in str(caught.value) and "model_file" in str(caught.value)


def test_an_upstream_result_with_a_renamed_field_fails_in_the_kfp_runner_naming_it():
    renamed = {**SHARDED.model_dump(mode="json"), "manifest": "/m.json"}
    del renamed["manifest_path"]
    with pytest.raises(ValidationError, match="manifest_path"):
        kfp_stage.upstream_results({"sharded": json.dumps(renamed), "validated": "{}"})
    assert kfp_stage.upstream_results({"sharded": SHARDED.model_dump_json(), "trained": "{}"}) == {"sharded": SHARDED}


def test_a_stage_refuses_another_stages_config_before_importing_anything():
    with pytest.raises(TypeError, match="takes a TrainConfig. Received: EvaluateConfig"):
        STAGES["train"].run(EvaluateConfig(manifest_path="/m.json", model_path="/model.keras"))


def test_the_one_stage_table_drives_the_cli_the_flows_and_kfp():
    from flows import stages as flow_stages

    for name, stage in STAGES.items():
        assert cli.STAGES[name] == (stage.module, stage.help)
    assert set(cli.STAGES) - set(STAGES) == {"demo-data", "kfp", "serve"}
    assert flow_stages.STAGES is STAGES
    assert wiring.STAGES == kfp_stage.STAGES == PIPELINE_STAGES and set(PIPELINE_STAGES) == set(STAGES) - {"sync", "score"}
    # kfp_pipeline runs in .venv-kfp, without pydantic: its image map must agree with the table.
    tree = ast.parse((REPO / "kfp_pipeline" / "pipeline.py").read_text())
    assigned = {node.targets[0].id: node.value for node in tree.body if isinstance(node, ast.Assign)}
    kfp_images = ast.literal_eval(assigned["STAGE_IMAGES"])
    assert kfp_images == {name: STAGES[name].image for name in PIPELINE_STAGES}


@pytest.mark.parametrize("name", ["sync", "validate", "register"])
def test_component_modules_use_the_tables_classes(name: str):
    import importlib

    stage = STAGES[name]
    module = importlib.import_module(stage.module)
    assert getattr(module, stage.config.__name__) is stage.config and getattr(module, stage.result.__name__) is stage.result


def test_a_skipped_run_names_the_version_it_reuses_and_reads_like_a_trained_one():
    skipped = PipelineSummary(**COMMON, skipped=True, reused=REUSED)
    assert (skipped.trained, skipped.evaluated, skipped.registered) == (None, None, None)
    assert (skipped.run_id, skipped.version, skipped.decision, skipped.test) == (REUSED.run_id, "1", REUSED_DECISION, {"test/auc": 0.7})
    trained = PipelineSummary(**COMMON, skipped=False, trained=TRAINED, evaluated=EVALUATED, registered=REGISTERED)
    assert (trained.run_id, trained.version, trained.decision, trained.threshold) == (TRAINED.run_id, "2", "promoted", 0.4)
    # Across a process boundary (compare's CLI, a deployment's result) it comes back the same.
    compared = CompareConfig.model_validate(json.loads(json.dumps({"results": {"baseline": skipped.model_dump(mode="json")}})))
    assert compared.results["baseline"] == skipped


def test_a_summary_cannot_be_both_skipped_and_trained():
    with pytest.raises(ValidationError, match="skipped=True"):
        PipelineSummary(**COMMON, skipped=True, reused=REUSED, trained=TRAINED)
    with pytest.raises(ValidationError, match="skipped=False"):
        PipelineSummary(**COMMON, skipped=False, trained=TRAINED)


def test_the_default_registered_model_is_named_once(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DETECTOR_REGISTERED_MODEL", raising=False)
    assert PipelineConfig().registered_model_name == DEFAULT_REGISTERED_MODEL == "ai-image-detector"
    fields = RegistryConfig.model_fields
    assert fields["registered_model"].default == DEFAULT_REGISTERED_MODEL and fields["primary_metric"].default == "val/auc_final"


def test_an_image_job_crosses_to_a_worker_process_intact():
    job = ImageJob("/data/a.png", 64, "png", 95, 1000, {"rotation_degrees": 5.0}, seed=3, fit="crop", margin=1.25)
    assert pickle.loads(pickle.dumps(job)) == job
    with pytest.raises(AttributeError):
        job.size = 32  # frozen: a worker never sees a job that changed after it was queued


def test_a_stage_run_as_its_own_flow_speaks_json_and_reads_back_as_the_typed_result(tiny_data_config, tmp_path: Path):
    from components.config import ExecutionConfig
    from components.contracts import ValidateConfig
    from flows.stages import run_component, run_stage

    cfg = ValidateConfig(data=tiny_data_config, work_dir=str(tmp_path / "work"))
    typed = run_stage(ExecutionConfig(stages="in-process"), "validate", cfg)
    as_json = run_component("validate", cfg.model_dump(mode="json"))  # what stage_flow persists
    assert isinstance(typed, ValidateResult) and json.loads(json.dumps(as_json)) == as_json
    assert ValidateResult.model_validate(as_json).model_dump(exclude={"inspected"}) == typed.model_dump(exclude={"inspected"})
