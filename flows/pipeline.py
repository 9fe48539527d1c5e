"""Prefect flows: wiring only. Each task hands one stage its typed config and passes on its small
typed result (components/contracts); flows/stages.py runs the stage in-process or as its own deployment run, as
`execution.stages` says. Component modules are imported only when a stage runs, so importing
this module (as a Prefect worker does to read a deployment) never loads TensorFlow.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from components import settings
from components.config import PipelineConfig, VariantConfig, build_config
from components.contracts import (
    CompareConfig,
    CompareResult,
    ComparisonSummary,
    EvaluateResult,
    PipelineSummary,
    RegisteredVersion,
    RegistryResult,
    ShardResult,
    SyncResult,
    TrainResult,
    ValidateResult,
)
from components.wiring import config_key, localised, stage_config
from flows.stages import run_stage

VARIANT_ORDER = ("baseline", "improved")


@task(retries=2, retry_delay_seconds=10)
def sync_task(cfg: PipelineConfig, uri: str) -> SyncResult:
    return run_stage(cfg.execution, "sync", stage_config("sync", cfg.with_changes(data={"root": uri})))


@task
def validate_task(cfg: PipelineConfig) -> ValidateResult:
    return run_stage(cfg.execution, "validate", stage_config("validate", cfg))


@task
def shard_task(cfg: PipelineConfig, validated: ValidateResult) -> ShardResult:
    return run_stage(cfg.execution, "shard", stage_config("shard", cfg, validated=validated))


@task
def train_task(cfg: PipelineConfig, sharded: ShardResult, parent_run_id: str | None, baseline: VariantConfig) -> TrainResult:
    config = stage_config("train", cfg, sharded=sharded, parent_run_id=parent_run_id, baseline=baseline)
    return run_stage(cfg.execution, "train", config)


@task
def evaluate_task(cfg: PipelineConfig, sharded: ShardResult, trained: TrainResult) -> EvaluateResult:
    return run_stage(cfg.execution, "evaluate", stage_config("evaluate", cfg, sharded=sharded, trained=trained))


@task(retries=2, retry_delay_seconds=5)
def find_registered_task(cfg: PipelineConfig, key: str) -> RegisteredVersion | None:
    from components.registry import register

    return register.find_version(cfg.registered_model_name, key)


@task(retries=2, retry_delay_seconds=5)
def register_task(cfg: PipelineConfig, sharded: ShardResult, trained: TrainResult, evaluated: EvaluateResult) -> RegistryResult:
    return run_stage(cfg.execution, "register", stage_config("register", cfg, sharded=sharded, trained=trained, evaluated=evaluated))


@flow(name="detector-pipeline", log_prints=True)
def train_pipeline(
    variant: str = "improved",
    profile: str = "demo",
    overrides: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    force: bool = False,
) -> PipelineSummary:
    """Validate → shard → train → evaluate → register one variant.

    When these exact shards and this variant config are already registered, training is
    skipped (that is what keeps a scheduled retrain cheap while nothing changed): the summary
    then names the version it reuses instead of a training run; force=True retrains anyway.
    """
    settings.apply()
    cfg = build_config(variant, profile, overrides)  # a bad config fails here, before any work
    settings.check_tracking_server()
    cfg = localised(cfg, lambda uri: sync_task(cfg, uri).local_root)
    validated = validate_task(cfg)
    for difference in validated.class_differences:
        get_run_logger().warning("validate: %s (docs/generalisation.md)", difference)
    sharded = shard_task(cfg, validated)
    done = {"variant": variant, "positive_class": cfg.data.positive_class, "validated": validated, "sharded": sharded}
    existing = None if force else find_registered_task(cfg, config_key(cfg, sharded))
    if existing:
        get_run_logger().info("%s: data and config unchanged since v%s; skipping training (force=True retrains)", variant, existing.version)
        return PipelineSummary(**done, skipped=True, reused=existing)
    trained = train_task(cfg, sharded, parent_run_id, build_config("baseline", profile, overrides).variant)
    evaluated = evaluate_task(cfg, sharded, trained)
    registered = register_task(cfg, sharded, trained, evaluated)
    get_run_logger().info(
        "%s: test AUC %.3f, run %s, model version %s (%s)",
        variant,
        evaluated.test["test/auc"],
        trained.run_id,
        registered.version,
        registered.decision,
    )
    return PipelineSummary(**done, skipped=False, trained=trained, evaluated=evaluated, registered=registered)


@task
def compare_task(results: dict[str, PipelineSummary], parent_run_id: str, work_dir: str, changed: list[dict[str, Any]]) -> CompareResult:
    from components.evaluation import compare

    return compare.run(CompareConfig(results=results, parent_run_id=parent_run_id, work_dir=work_dir, changed_settings=changed))


@flow(name="detector-compare", log_prints=True)
def compare_variants(
    profile: str = "demo", overrides: dict[str, Any] | None = None, force: bool = False, variants: list[str] | None = None
) -> ComparisonSummary:
    """Variants on the same shards (default: the report's two), grouped under one MLflow parent
    run, plus the report's table with a column per variant, changes relative to the first."""
    from components import record
    from components.evaluation import compare

    settings.apply()
    settings.check_tracking_server()
    variants = list(dict.fromkeys(variants or VARIANT_ORDER))
    if len(variants) < 2:
        raise ValueError(f"A comparison needs two or more distinct variants. Received: variants={variants}")
    configs = {variant: build_config(variant, profile, overrides) for variant in variants}  # an unknown name fails here
    last = configs[variants[-1]]
    parent_run_id = compare.start_parent_run(
        last.experiment_name, record.parent_run_name(last, profile), record.parent_params(last, profile)
    )
    results = {variant: train_pipeline(variant, profile, overrides, parent_run_id, force) for variant in variants}
    comparison = compare_task(results, parent_run_id, last.work_dir, record.changed_settings(configs))
    return ComparisonSummary(parent_run_id=parent_run_id, results=results, comparison=comparison)
