"""components.kfp_stage, the runner every KFP task calls (in the images, and from kfp.local)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from components import kfp_stage
from components.contracts import EvaluateResult, ShardResult, TrainResult, ValidateResult, stage
from components.data import s3data
from tests.kfp.conftest import REPO

UPSTREAM = {
    "validated": ValidateResult(
        report_path="/w/validated/report.csv", quarantine_dir="/w/validated/q", dataset_fingerprint="f" * 16, usable={}, statuses={}
    ),
    "sharded": ShardResult(
        manifest_path="/w/shards/k/manifest.json", shard_key="k" * 16, dataset_fingerprint="f" * 16, counts={}, reused=False
    ),
    "trained": TrainResult(
        run_id="r" * 32,
        experiment_id="1",
        model_path="/w/runs/baseline-k/model.keras",
        model_uri="runs:/r/model",
        epochs_completed=1,
        resumed_at_epoch=0,
        reused=False,
        final_metrics={},
    ),
    "evaluated": EvaluateResult(
        metrics_path="/w/m.json", positive_class="REAL", threshold=0.42, test={"test/auc": 0.9, "test/accuracy": 0.8}
    ),
}


def test_the_result_is_the_last_json_document_after_the_stage_log():
    lines = ["Epoch 1/1", "{'loss': 0.69}", "{", '  "run_id": "abc",', '  "final": {', '    "auc": 0.5', "  }", "}"]
    assert kfp_stage.last_json_document(lines, "train") == {"run_id": "abc", "final": {"auc": 0.5}}


def test_no_json_result_is_an_error_showing_the_last_lines():
    with pytest.raises(ValueError, match="Traceback"):
        kfp_stage.last_json_document(["Epoch 1/1", "Traceback (most recent call last):"], "train")


@pytest.mark.parametrize("name", kfp_stage.STAGES)
def test_every_stage_config_is_what_the_component_accepts(name: str):
    cfg = kfp_stage.pipeline_config("improved", "demo", "/data/set", '{"work_dir": "/w"}')
    built = kfp_stage.stage_config(name, cfg, **UPSTREAM)
    module = importlib.import_module(stage(name).module)
    assert type(built) is getattr(module, type(built).__name__)
    assert built == type(built).model_validate(json.loads(json.dumps(built.model_dump(mode="json"))))


def test_data_root_parameter_wins_and_bad_overrides_name_the_value():
    assert kfp_stage.pipeline_config("baseline", "demo", "/data/x", '{"data": {"root": "/data/y"}}').data.root == "/data/x"
    with pytest.raises(ValueError, match=r"overrides='\[1\]'"):
        kfp_stage.pipeline_config("baseline", "demo", "", "[1]")


def _run_stage(name: str, tmp_path: Path, *args: str) -> ValidateResult:
    result = tmp_path / f"{name}.json"
    command = [sys.executable, "-m", "components.kfp_stage", name, "--profile", "demo", *args, "--result", str(result)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return stage(name).result.model_validate_json(result.read_text())


def test_validate_task_writes_the_stage_cli_result(tiny_dataset: Path, tmp_path: Path):
    overrides = json.dumps({"data": {"image_size": 32}, "work_dir": str(tmp_path / "work")})
    result = _run_stage("validate", tmp_path, "--data-root", str(tiny_dataset), "--overrides", overrides)
    assert Path(result.report_path).is_file() and str(tmp_path / "work") in result.report_path
    assert len(result.dataset_fingerprint) == 16


def test_s3_data_is_mirrored_by_validate_and_read_from_the_mirror_after(s3_env, tiny_dataset: Path, tmp_path: Path):
    client = s3data.s3_client()
    bucket = f"kfp-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    for path in sorted(tiny_dataset.rglob("*.png")):
        client.upload_file(str(path), bucket, f"sets/tiny/{path.relative_to(tiny_dataset)}")
    work = tmp_path / "work"
    # A held-out set on S3 too: the tiny test split again, under its own prefix.
    held_out = {"echo": f"s3://{bucket}/sets/tiny/test"}
    overrides = json.dumps({"data": {"image_size": 32, "test_sets": held_out}, "work_dir": str(work)})
    validated = _run_stage("validate", tmp_path, "--data-root", f"s3://{bucket}/sets/tiny", "--overrides", overrides)
    mirror = work / "s3-cache" / bucket / "sets" / "tiny"
    mirrored = sorted(path.relative_to(mirror) for path in mirror.rglob("*.png"))
    assert mirrored == sorted(path.relative_to(tiny_dataset) for path in tiny_dataset.rglob("*.png"))
    cfg = kfp_stage.pipeline_config("baseline", "demo", f"s3://{bucket}/sets/tiny", overrides)
    local = kfp_stage.with_local_data(cfg, "shard", "")
    assert local.data.root == str(mirror) and local.data.test_sets == {"echo": str(mirror / "test")}
    assert validated.dataset_fingerprint and validated.usable["heldout-echo"] == validated.usable["test"]
