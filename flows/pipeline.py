"""Prefect flows: wiring only. Each task hands one stage its JSON config and passes on its small
JSON result; flows/stages.py runs the stage in-process or as its own deployment run, as
`execution.stages` says. Component modules are imported only when a stage runs, so importing
this module (as a Prefect worker does to read a deployment) never loads TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from components import settings
from components.config import PipelineConfig, build_config, fingerprint
from flows.stages import run_stage

VARIANT_ORDER = ("baseline", "improved")


@task(retries=2, retry_delay_seconds=10)
def sync_task(cfg: PipelineConfig) -> dict[str, Any]:
    return run_stage(cfg.execution, "sync", {"uri": cfg.data.root, "cache_dir": str(Path(cfg.work_dir) / "s3-cache")})


@task
def validate_task(cfg: PipelineConfig) -> dict[str, Any]:
    return run_stage(cfg.execution, "validate", {"data": cfg.data.model_dump(), "work_dir": cfg.work_dir})


@task
def shard_task(cfg: PipelineConfig, validated: dict[str, Any]) -> dict[str, Any]:
    shard_cfg = {
        "data": cfg.data.model_dump(),
        "augment": cfg.variant.augment.model_dump(),
        "report_path": validated["report_path"],
        "dataset_fingerprint": validated["dataset_fingerprint"],
        "work_dir": cfg.work_dir,
    }
    return run_stage(cfg.execution, "shard", shard_cfg)


@task
def train_task(cfg: PipelineConfig, sharded: dict[str, Any], parent_run_id: str | None) -> dict[str, Any]:
    train_cfg = {"pipeline": cfg.model_dump(), "manifest_path": sharded["manifest_path"], "parent_run_id": parent_run_id}
    return run_stage(cfg.execution, "train", train_cfg)


@task
def evaluate_task(cfg: PipelineConfig, sharded: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    evaluate_cfg = {
        "manifest_path": sharded["manifest_path"],
        "model_path": trained["model_path"],
        "run_id": trained["run_id"],
        "output_dir": str(Path(trained["model_path"]).parent / "evaluation"),
    }
    return run_stage(cfg.execution, "evaluate", evaluate_cfg)


@task(retries=2, retry_delay_seconds=5)
def find_registered_task(cfg: PipelineConfig, config_key: str) -> dict[str, Any] | None:
    from components import registry

    return registry.find_version(cfg.registered_model_name, config_key)


@task(retries=2, retry_delay_seconds=5)
def register_task(
    cfg: PipelineConfig, sharded: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any], config_key: str
) -> dict[str, Any]:
    registry_cfg = {
        "registered_model": cfg.registered_model_name,
        "model_uri": trained["model_uri"],
        "run_id": trained["run_id"],
        "variant": cfg.variant.name,
        "dataset_fingerprint": sharded["dataset_fingerprint"],
        "threshold": evaluated["threshold"],
        "metrics": evaluated["test"],
        "primary_metric": cfg.tracking.primary_metric,
        "config_key": config_key,
    }
    return run_stage(cfg.execution, "register", registry_cfg)


@flow(name="detector-pipeline", log_prints=True)
def train_pipeline(
    variant: str = "improved",
    profile: str = "demo",
    overrides: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Validate → shard → train → evaluate → register one variant.

    When these exact shards and this variant config are already registered, training is
    skipped (that is what keeps a scheduled retrain cheap while nothing changed); force=True
    retrains anyway.
    """
    settings.apply()
    cfg = build_config(variant, profile, overrides)  # a bad config fails here, before any work
    settings.check_tracking_server()
    if cfg.data.root.startswith("s3://"):
        cfg = cfg.with_changes(data={"root": sync_task(cfg)["local_root"]})
    validated = validate_task(cfg)
    sharded = shard_task(cfg, validated)
    config_key = fingerprint(sharded["shard_key"], cfg.variant.model_dump())
    existing = None if force else find_registered_task(cfg, config_key)
    if existing:
        get_run_logger().info(
            "%s: data and config unchanged since v%s; skipping training (force=True retrains)", variant, existing["version"]
        )
        return {
            "variant": variant,
            "skipped": True,
            "validated": validated,
            "sharded": sharded,
            "trained": {"run_id": existing["run_id"]},
            "evaluated": {"test": existing["metrics"], "threshold": existing["threshold"], "positive_class": cfg.data.positive_class},
            "registered": {
                "registered_model": cfg.registered_model_name,
                "version": existing["version"],
                "decision": "unchanged; not retrained",
            },
        }
    trained = train_task(cfg, sharded, parent_run_id)
    evaluated = evaluate_task(cfg, sharded, trained)
    registered = register_task(cfg, sharded, trained, evaluated, config_key)
    get_run_logger().info(
        "%s: test AUC %.3f, run %s, model version %s (%s)",
        variant,
        evaluated["test"]["test/auc"],
        trained["run_id"],
        registered["version"],
        registered["decision"],
    )
    return {
        "variant": variant,
        "skipped": False,
        "validated": validated,
        "sharded": sharded,
        "trained": trained,
        "evaluated": evaluated,
        "registered": registered,
    }


@task
def compare_task(results: dict[str, dict[str, Any]], parent_run_id: str, work_dir: str, changed: list[dict[str, Any]]) -> dict[str, Any]:
    from components import compare

    compare_cfg = compare.CompareConfig(results=results, parent_run_id=parent_run_id, work_dir=work_dir, changed_settings=changed)
    return compare.run(compare_cfg).model_dump()


@flow(name="detector-compare", log_prints=True)
def compare_variants(profile: str = "demo", overrides: dict[str, Any] | None = None, force: bool = False) -> dict[str, Any]:
    """Both variants on the same shards, grouped under one MLflow parent run, plus the report's table."""
    from components import compare, record

    settings.apply()
    settings.check_tracking_server()
    configs = {variant: build_config(variant, profile, overrides) for variant in VARIANT_ORDER}
    improved = configs["improved"]
    parent_params = {"profile": profile, "dataset": improved.dataset_name, "data.root": improved.data.root}
    parent_run_id = compare.start_parent_run(improved.experiment_name, record.parent_run_name(improved, profile), parent_params)
    results = {variant: train_pipeline(variant, profile, overrides, parent_run_id, force) for variant in VARIANT_ORDER}
    return {
        "parent_run_id": parent_run_id,
        "results": results,
        "comparison": compare_task(results, parent_run_id, improved.work_dir, record.changed_settings(configs)),
    }
