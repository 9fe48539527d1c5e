"""One stage, wherever it runs: in the pipeline's own process, or as its own deployment run in
its own image (the CPU image for data stages, the GPU image for training).

The pipeline always hands a stage a JSON config and gets a JSON result back, so which of the two
happens is a configuration choice (`execution.stages`), not a second code path. Component modules
are imported only when a stage runs, so importing this module never loads TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

from prefect import flow

from components import settings
from components.config import ExecutionConfig

# stage: (component module, config class, image). Training is the only stage that wants a GPU.
STAGES: dict[str, tuple[str, str, str]] = {
    "sync": ("s3data", "SyncConfig", "cpu"),
    "validate": ("validate", "ValidateConfig", "cpu"),
    "shard": ("shard", "ShardConfig", "cpu"),
    "train": ("train", "TrainConfig", "gpu"),
    "evaluate": ("evaluate", "EvaluateConfig", "cpu"),
    "register": ("registry", "RegistryConfig", "cpu"),
}


class StageFailed(RuntimeError):
    """A stage's deployment run ended in a state other than Completed."""


def run_component(stage: str, config: dict[str, Any]) -> dict[str, Any]:
    if stage not in STAGES:
        raise ValueError(f"Unknown stage. Expected one of {sorted(STAGES)}. Received: stage={stage!r}")
    module_name, config_class, _ = STAGES[stage]
    module = importlib.import_module(f"components.{module_name}")
    return module.run(getattr(module, config_class).model_validate(config)).model_dump(mode="json")


# JSON results: the parent may run another image (another Python, another TensorFlow) than the
# stage, and reads the persisted result from the shared result storage.
@flow(name="detector-stage", persist_result=True, result_serializer="json", log_prints=True)
def stage_flow(stage: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run one pipeline stage (validate, shard, train, evaluate, register, sync) from its JSON config."""
    settings.apply()
    return run_component(stage, config)


def run_stage(execution: ExecutionConfig, stage: str, config: dict[str, Any]) -> dict[str, Any]:
    """In-process, or as a run of the stage's deployment that this flow waits for."""
    if execution.stages == "in-process":
        return run_component(stage, config)
    from prefect.deployments import run_deployment

    image = STAGES[stage][2]
    deployment = execution.deployment.format(image=execution.gpu_image if image == "gpu" else image)
    flow_run = run_deployment(deployment, parameters={"stage": stage, "config": config}, timeout=execution.timeout_seconds)
    if not flow_run.state or not flow_run.state.is_completed():
        state = flow_run.state.name if flow_run.state else "unknown"
        raise StageFailed(f"Stage {stage} ran as {deployment} (flow run {flow_run.name}) and ended {state}: see that run's logs.")
    return flow_run.state.result()
