"""Each stage's Config and Result: what a stage takes and what it hands the next one.

TensorFlow-free, so the flows, the KFP runner and the CLI build and read them without loading a
stage. The component modules import these names (`train.TrainConfig` is this `TrainConfig`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from components.config import (
    DEFAULT_REGISTERED_MODEL,
    PRIMARY_METRIC,
    AugmentConfig,
    DataConfig,
    DataEngine,
    GateConfig,
    PipelineConfig,
    Strict,
    VariantConfig,
)


class SyncConfig(Strict):
    uri: str
    cache_dir: str = "work/s3-cache"


class SyncResult(Strict):
    uri: str
    local_root: str
    fetched: int
    unchanged: int
    removed: int
    bytes_fetched: int
    refused: dict[str, str] = {}  # object key (or cached path, on removal) -> why it was not written or removed
    failed: dict[str, str] = {}  # object key -> why it could not be fetched (and whether the last copy was kept)
    verified_by: dict[str, int] = {}  # fetched objects by how their content was checked: checksum, md5 or size


class ValidateConfig(Strict):
    data: DataConfig = DataConfig()
    work_dir: str = "work"
    workers: int = 0  # 0 means one per core; with engine ray, the CPUs of a local Ray cluster
    engine: DataEngine = "local"


class ValidateResult(Strict):
    report_path: str
    quarantine_dir: str
    dataset_fingerprint: str
    usable: dict[str, dict[str, int]]
    statuses: dict[str, int]
    inspected: int = 0  # files decoded by this run; the rest came from an earlier run's report or progress
    # Formats, sizes or JPEG qualities that differ between the classes (components/data/shortcuts.py).
    class_differences: list[str] = []


class ShardConfig(Strict):
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    report_path: str
    dataset_fingerprint: str
    work_dir: str = "work"
    workers: int = 0  # 0 means one per core; with engine ray, the CPUs of a local Ray cluster
    engine: DataEngine = "local"


class ShardResult(Strict):
    manifest_path: str
    shard_key: str
    dataset_fingerprint: str
    counts: dict[str, int]
    reused: bool


class TrainConfig(Strict):
    pipeline: PipelineConfig = PipelineConfig()
    manifest_path: str
    parent_run_id: str | None = None
    # The baseline as this run's profile and overrides make it, so the run's description lists what
    # truly differs; None infers it from the declared variants (components/record.py).
    baseline: VariantConfig | None = None


class TrainResult(Strict):
    run_id: str
    experiment_id: str
    model_path: str
    model_uri: str
    epochs_completed: int
    resumed_at_epoch: int
    reused: bool
    final_metrics: dict[str, float]


class EvaluateConfig(Strict):
    manifest_path: str
    model_path: str
    run_id: str | None = None  # log into this MLflow run when given
    batch_size: int = 64
    output_dir: str = "work/evaluation"


class EvaluateResult(Strict):
    metrics_path: str
    positive_class: str
    threshold: float
    test: dict[str, float]


class RegistryConfig(Strict):
    registered_model: str = DEFAULT_REGISTERED_MODEL
    model_uri: str
    run_id: str
    variant: str
    dataset_fingerprint: str
    threshold: float  # on P(positive_class), as evaluation tuned it
    metrics: dict[str, float]
    primary_metric: str = PRIMARY_METRIC
    gate: GateConfig = GateConfig()
    positive_class: str = "REAL"
    generated_class: str = "FAKE"
    # Fingerprint of shards + variant config: a scheduled run finding it registered skips training.
    config_key: str | None = None


class RegistryResult(Strict):
    registered_model: str
    version: str
    promoted: bool
    decision: str
    champion_version: str | None


class RegisteredVersion(Strict):
    """A version already in the registry (components/registry/register.py, find_version): what a skipped run reuses."""

    registered_model: str
    version: str
    run_id: str
    metrics: dict[str, float]
    threshold: float


class ScoreConfig(Strict):
    """Batch scoring (components/serving/score.py): a folder or s3:// prefix, scored by a registry version."""

    images: str  # a local folder; an s3:// prefix is synced into it first (the flow's sync stage)
    output_dir: str = "work/scores"
    model_uri: str = f"models:/{DEFAULT_REGISTERED_MODEL}@champion"
    source: str | None = None  # what `images` was synced from, for the record; None for a local folder
    format: Literal["csv", "parquet"] = "csv"
    psi_warning: float = Field(0.2, gt=0, description="PSI above this is logged as drift (0.1-0.2 moderate, above 0.2 significant).")
    experiment_name: str = "detector-scoring"
    workers: int = 0  # decode workers; 0 means one per core


class ScoreResult(Strict):
    rows_path: str
    summary_path: str
    model_version: str
    scored: int
    reused: int  # unchanged images already scored by this version: not decoded again
    failed: int
    share_flagged: float | None  # of the scored images, the share called AI-generated
    drift: dict[str, float]  # PSI per column against the version's test split
    drift_warnings: list[str]
    run_id: str
