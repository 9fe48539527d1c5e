"""The one stage table: the CLI's stage commands, the Prefect stage runner, the pipeline wiring and
the KFP stage runner all read it. A stage's module is imported only when it runs, so reading the
table never loads TensorFlow."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from components.config import Strict
from components.contracts import results


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # its `run(cfg) -> Result` and its CLI (`python -m <module>`)
    config: type[Strict]
    result: type[Strict]
    image: Literal["cpu", "gpu"]  # training is the only stage that wants a GPU
    help: str

    def run(self, config: Strict) -> Strict:
        if not isinstance(config, self.config):
            raise TypeError(f"Stage {self.name} takes a {self.config.__name__}. Received: {type(config).__name__}")
        return importlib.import_module(self.module).run(config)


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "sync",
            "components.data.s3data",
            results.SyncConfig,
            results.SyncResult,
            "cpu",
            "Mirror an s3://bucket/prefix dataset into the local cache (changed objects only).",
        ),
        Stage(
            "validate",
            "components.data.validate",
            results.ValidateConfig,
            results.ValidateResult,
            "cpu",
            "Decode every image; quarantine the unusable, flag duplicates and leakage.",
        ),
        Stage(
            "shard",
            "components.data.shard",
            results.ShardConfig,
            results.ShardResult,
            "cpu",
            "Split and write TFRecord shards plus manifest.json.",
        ),
        Stage(
            "train",
            "components.training.train",
            results.TrainConfig,
            results.TrainResult,
            "gpu",
            "Train one variant from shards; resumable; logs to MLflow.",
        ),
        Stage(
            "evaluate",
            "components.evaluation.evaluate",
            results.EvaluateConfig,
            results.EvaluateResult,
            "cpu",
            "Test metrics at 0.5 and at the threshold tuned on validation.",
        ),
        Stage(
            "register",
            "components.registry.register",
            results.RegistryConfig,
            results.RegistryResult,
            "cpu",
            "Register a model version; @champion if it wins the gate, else @challenger.",
        ),
        Stage(
            "score",
            "components.serving.score",
            results.ScoreConfig,
            results.ScoreResult,
            "cpu",
            "Score a folder with a registry version: one row per image, a summary, drift against its test split.",
        ),
    )
}
# What one pipeline run wires, in order; sync runs before them only for s3:// data. Score is not a
# pipeline stage: the score-folder flow (flows/score.py) runs it after sync.
PIPELINE_STAGES = ("validate", "shard", "train", "evaluate", "register")


def stage(name: str) -> Stage:
    if name not in STAGES:
        raise ValueError(f"Unknown stage. Expected one of {sorted(STAGES)}. Received: stage={name!r}")
    return STAGES[name]
