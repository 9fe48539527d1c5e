"""Prefect flows: wiring only. Each task calls one component's run() and passes on its small
JSON result. Component modules are imported inside the tasks, so importing this module (as a
Prefect worker does to read a deployment) never loads TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from components import settings
from components.config import PipelineConfig, build_config, fingerprint

VARIANT_ORDER = ("baseline", "improved")


@task(retries=2, retry_delay_seconds=10)
def sync_task(cfg: PipelineConfig) -> dict[str, Any]:
    from components import s3data

    return s3data.run(s3data.SyncConfig(uri=cfg.data.root, cache_dir=str(Path(cfg.work_dir) / "s3-cache"))).model_dump()


@task
def validate_task(cfg: PipelineConfig) -> dict[str, Any]:
    from components import validate

    return validate.run(validate.ValidateConfig(data=cfg.data, work_dir=cfg.work_dir)).model_dump()


@task
def shard_task(cfg: PipelineConfig, validated: dict[str, Any]) -> dict[str, Any]:
    from components import shard

    shard_cfg = shard.ShardConfig(
        data=cfg.data,
        augment=cfg.variant.augment,
        report_path=validated["report_path"],
        dataset_fingerprint=validated["dataset_fingerprint"],
        work_dir=cfg.work_dir,
    )
    return shard.run(shard_cfg).model_dump()


@task
def train_task(cfg: PipelineConfig, sharded: dict[str, Any], parent_run_id: str | None) -> dict[str, Any]:
    from components import train

    return train.run(train.TrainConfig(pipeline=cfg, manifest_path=sharded["manifest_path"], parent_run_id=parent_run_id)).model_dump()


@task
def evaluate_task(cfg: PipelineConfig, sharded: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    from components import evaluate

    evaluate_cfg = evaluate.EvaluateConfig(
        manifest_path=sharded["manifest_path"],
        model_path=trained["model_path"],
        run_id=trained["run_id"],
        output_dir=str(Path(trained["model_path"]).parent / "evaluation"),
    )
    return evaluate.run(evaluate_cfg).model_dump()


@task(retries=2, retry_delay_seconds=5)
def find_registered_task(cfg: PipelineConfig, config_key: str) -> dict[str, Any] | None:
    from components import registry

    return registry.find_version(cfg.registered_model_name, config_key)


@task(retries=2, retry_delay_seconds=5)
def register_task(
    cfg: PipelineConfig, sharded: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any], config_key: str
) -> dict[str, Any]:
    from components import registry

    registry_cfg = registry.RegistryConfig(
        registered_model=cfg.registered_model_name,
        model_uri=trained["model_uri"],
        run_id=trained["run_id"],
        variant=cfg.variant.name,
        dataset_fingerprint=sharded["dataset_fingerprint"],
        threshold=evaluated["threshold"],
        metrics=evaluated["test"],
        primary_metric=cfg.tracking.primary_metric,
        config_key=config_key,
    )
    return registry.run(registry_cfg).model_dump()


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
        evaluated["test"]["test_auc"],
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
def compare_task(results: dict[str, dict[str, Any]], parent_run_id: str, work_dir: str) -> dict[str, Any]:
    from components import compare

    return compare.run(compare.CompareConfig(results=results, parent_run_id=parent_run_id, work_dir=work_dir)).model_dump()


@flow(name="detector-compare", log_prints=True)
def compare_variants(profile: str = "demo", overrides: dict[str, Any] | None = None, force: bool = False) -> dict[str, Any]:
    """Both variants on the same shards, grouped under one MLflow parent run, plus the report's table."""
    from components import compare

    settings.apply()
    settings.check_tracking_server()
    configs = {variant: build_config(variant, profile, overrides) for variant in VARIANT_ORDER}
    parent_run_id = compare.start_parent_run(configs["improved"].experiment_name, profile)
    results = {variant: train_pipeline(variant, profile, overrides, parent_run_id, force) for variant in VARIANT_ORDER}
    return {
        "parent_run_id": parent_run_id,
        "results": results,
        "comparison": compare_task(results, parent_run_id, configs["improved"].work_dir),
    }
