"""How the pipeline builds each stage's config from the one before: shared by the Prefect flow
(flows/pipeline.py) and the Kubeflow stage runner (components/kfp_stage.py), so both wire the
same stages the same way. Configs are built as typed models, so a renamed or missing field fails
here, naming it, before any stage runs. TensorFlow-free: the flows import it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from components.config import PipelineConfig, Strict, VariantConfig, fingerprint
from components.contracts import (
    PIPELINE_STAGES,
    EvaluateConfig,
    EvaluateResult,
    RegistryConfig,
    ShardConfig,
    ShardResult,
    SyncConfig,
    TrainConfig,
    TrainResult,
    ValidateConfig,
    ValidateResult,
    stage,
)

STAGES = PIPELINE_STAGES
ResultT = TypeVar("ResultT", bound=Strict)


def config_key(cfg: PipelineConfig, sharded: ShardResult) -> str:
    """These shards and this variant: what the registry's skip check and the version's tag key on."""
    return fingerprint(sharded.shard_key, cfg.variant.key_dump())


def localised(cfg: PipelineConfig, local: Callable[[str], str]) -> PipelineConfig:
    """The config with each s3:// location (data.root and every data.test_sets entry) replaced by
    `local(uri)`, the folder its mirror is in; local folders stay as they are."""

    def where(uri: str) -> str:
        return local(uri) if uri.startswith("s3://") else uri

    return cfg.with_changes(
        data={"root": where(cfg.data.root), "test_sets": {name: where(uri) for name, uri in cfg.data.test_sets.items()}}
    )


def _needs(name: str, result: ResultT | None, for_stage: str) -> ResultT:
    if result is None:
        raise ValueError(f"Stage {for_stage} needs the {name} result. Received: {name}=None")
    return result


def stage_config(
    name: str,
    cfg: PipelineConfig,
    *,
    validated: ValidateResult | None = None,
    sharded: ShardResult | None = None,
    trained: TrainResult | None = None,
    evaluated: EvaluateResult | None = None,
    parent_run_id: str | None = None,
    baseline: VariantConfig | None = None,
) -> Strict:
    """The stage's Config from the pipeline config and the upstream stages' results."""
    stage(name)  # an unknown stage fails here, naming it
    if name == "sync":
        return SyncConfig(uri=cfg.data.root, cache_dir=str(Path(cfg.work_dir) / "s3-cache"))
    if name == "validate":
        return ValidateConfig(data=cfg.data, work_dir=cfg.work_dir, engine=cfg.execution.engine)
    if name == "shard":
        validated = _needs("validated", validated, name)
        return ShardConfig(
            data=cfg.data,
            augment=cfg.variant.augment,
            report_path=validated.report_path,
            dataset_fingerprint=validated.dataset_fingerprint,
            work_dir=cfg.work_dir,
            engine=cfg.execution.engine,
        )
    sharded = _needs("sharded", sharded, name)
    if name == "train":
        return TrainConfig(pipeline=cfg, manifest_path=sharded.manifest_path, parent_run_id=parent_run_id, baseline=baseline)
    trained = _needs("trained", trained, name)
    if name == "evaluate":
        return EvaluateConfig(
            manifest_path=sharded.manifest_path,
            model_path=trained.model_path,
            run_id=trained.run_id,
            output_dir=str(Path(trained.model_path).parent / "evaluation"),
        )
    evaluated = _needs("evaluated", evaluated, name)
    return RegistryConfig(
        registered_model=cfg.registered_model_name,
        model_uri=trained.model_uri,
        run_id=trained.run_id,
        variant=cfg.variant.name,
        dataset_fingerprint=sharded.dataset_fingerprint,
        threshold=evaluated.threshold,
        metrics=evaluated.test,
        primary_metric=cfg.tracking.primary_metric,
        gate=cfg.tracking.gate,
        positive_class=evaluated.positive_class,
        generated_class=cfg.data.generated_class,
        config_key=config_key(cfg, sharded),
    )
