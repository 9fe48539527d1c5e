"""Typed, TensorFlow-free contracts between stages: each stage's Config and Result, the shard
Manifest, the pipeline summary, the stage table and the names shared across modules. Stages
exchange these objects; they become JSON only at process boundaries (a stage's CLI or deployment
run, a KFP task).

Part of the core: may import only components.config."""

from components.config import DEFAULT_REGISTERED_MODEL, PRIMARY_METRIC, RuntimeConfig
from components.contracts.manifest import (
    MANIFEST_VERSION,
    Augmentation,
    Manifest,
    ManifestEncoding,
    ManifestSource,
    SplitEntry,
    SplitPolicy,
)
from components.contracts.results import (
    EvaluateConfig,
    EvaluateResult,
    RegisteredVersion,
    RegistryConfig,
    RegistryResult,
    ScoreConfig,
    ScoreResult,
    ShardConfig,
    ShardResult,
    SyncConfig,
    SyncResult,
    TrainConfig,
    TrainResult,
    ValidateConfig,
    ValidateResult,
)
from components.contracts.summary import REUSED_DECISION, CompareConfig, CompareResult, ComparisonSummary, PipelineSummary
from components.contracts.table import PIPELINE_STAGES, STAGES, Stage, stage

# Registry aliases: @champion serves, @challenger is the newest candidate that has not won,
# @previous is the champion before, which rollback restores.
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_REGISTERED_MODEL",
    "MANIFEST_VERSION",
    "PIPELINE_STAGES",
    "PREVIOUS",
    "PRIMARY_METRIC",
    "REUSED_DECISION",
    "STAGES",
    "Augmentation",
    "CompareConfig",
    "CompareResult",
    "ComparisonSummary",
    "EvaluateConfig",
    "EvaluateResult",
    "Manifest",
    "ManifestEncoding",
    "ManifestSource",
    "PipelineSummary",
    "RegisteredVersion",
    "RegistryConfig",
    "RegistryResult",
    "ScoreConfig",
    "ScoreResult",
    "RuntimeConfig",
    "ShardConfig",
    "ShardResult",
    "SplitEntry",
    "SplitPolicy",
    "Stage",
    "SyncConfig",
    "SyncResult",
    "TrainConfig",
    "TrainResult",
    "ValidateConfig",
    "ValidateResult",
    "stage",
]
