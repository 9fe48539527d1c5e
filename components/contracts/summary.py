"""What one pipeline run returns (`flows/pipeline.py::train_pipeline`), and the comparison of two."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from components.config import Strict
from components.contracts.results import (
    EvaluateResult,
    RegisteredVersion,
    RegistryResult,
    ShardResult,
    TrainResult,
    ValidateResult,
)

REUSED_DECISION = "unchanged; not retrained"


class PipelineSummary(Strict):
    """One variant's run. A skipped run (these shards and this variant config already registered)
    trained, evaluated and registered nothing: those are None and `reused` is the version it found.
    The properties read the same for both kinds."""

    variant: str
    skipped: bool
    positive_class: str
    validated: ValidateResult
    sharded: ShardResult
    trained: TrainResult | None = None
    evaluated: EvaluateResult | None = None
    registered: RegistryResult | None = None
    reused: RegisteredVersion | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> PipelineSummary:
        ran = (self.trained, self.evaluated, self.registered)
        if self.skipped and (self.reused is None or any(ran)):
            raise ValueError("a skipped run has `reused` and no trained, evaluated or registered. Received: skipped=True")
        if not self.skipped and (self.reused is not None or not all(ran)):
            raise ValueError("a run that trained has trained, evaluated and registered, and no `reused`. Received: skipped=False")
        return self

    @property
    def run_id(self) -> str:
        return self.reused.run_id if self.reused else self.trained.run_id

    @property
    def test(self) -> dict[str, float]:
        return self.reused.metrics if self.reused else self.evaluated.test

    @property
    def threshold(self) -> float:
        return self.reused.threshold if self.reused else self.evaluated.threshold

    @property
    def registered_model(self) -> str:
        return self.reused.registered_model if self.reused else self.registered.registered_model

    @property
    def version(self) -> str:
        return self.reused.version if self.reused else self.registered.version

    @property
    def decision(self) -> str:
        return REUSED_DECISION if self.reused else self.registered.decision


class CompareConfig(Strict):
    results: dict[str, PipelineSummary]  # variant -> train_pipeline summary
    parent_run_id: str | None = None
    work_dir: str = "work"
    # record.changed_settings of the two variants as they ran, for the parent's description.
    changed_settings: list[dict[str, Any]] = []


class CompareResult(Strict):
    table_path: str
    markdown: str
    rows: list[dict[str, Any]]


class ComparisonSummary(Strict):
    """What `flows/pipeline.py::compare_variants` returns: both variants under one parent run."""

    parent_run_id: str
    results: dict[str, PipelineSummary]
    comparison: CompareResult
