"""How the pipeline builds each stage's config from the one before: shared by the Prefect flow
(flows/pipeline.py) and the Kubeflow stage runner (components/kfp_stage.py), so both wire the
same stages the same way. TensorFlow-free: the flows import it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.config import PipelineConfig, fingerprint

STAGES = ("validate", "shard", "train", "evaluate", "register")


def config_key(cfg: PipelineConfig, sharded: dict[str, Any]) -> str:
    """These shards and this variant: what the registry's skip check and the version's tag key on."""
    return fingerprint(sharded["shard_key"], cfg.variant.model_dump())


def stage_config(stage: str, cfg: PipelineConfig, upstream: dict[str, dict[str, Any]], parent_run_id: str | None = None) -> dict[str, Any]:
    """The stage's JSON config from the pipeline config and the upstream stages' results
    (`validated`, `sharded`, `trained`, `evaluated`)."""
    sharded, trained, evaluated = (upstream.get(name, {}) for name in ("sharded", "trained", "evaluated"))
    if stage == "validate":
        return {"data": cfg.data.model_dump(), "work_dir": cfg.work_dir}
    if stage == "shard":
        validated = upstream["validated"]
        return {
            "data": cfg.data.model_dump(),
            "augment": cfg.variant.augment.model_dump(),
            "report_path": validated["report_path"],
            "dataset_fingerprint": validated["dataset_fingerprint"],
            "work_dir": cfg.work_dir,
        }
    if stage == "train":
        return {"pipeline": cfg.model_dump(), "manifest_path": sharded["manifest_path"], "parent_run_id": parent_run_id}
    if stage == "evaluate":
        return {
            "manifest_path": sharded["manifest_path"],
            "model_path": trained["model_path"],
            "run_id": trained["run_id"],
            "output_dir": str(Path(trained["model_path"]).parent / "evaluation"),
        }
    if stage == "register":
        return {
            "registered_model": cfg.registered_model_name,
            "model_uri": trained["model_uri"],
            "run_id": trained["run_id"],
            "variant": cfg.variant.name,
            "dataset_fingerprint": sharded["dataset_fingerprint"],
            "threshold": evaluated["threshold"],
            "metrics": evaluated["test"],
            "primary_metric": cfg.tracking.primary_metric,
            "config_key": config_key(cfg, sharded),
        }
    raise ValueError(f"Unknown stage. Expected one of {list(STAGES)}. Received: stage={stage!r}")
