"""One stage, wherever it runs: in the pipeline's own process, or as its own deployment run in
its own image (the CPU image for data stages, the GPU image for training).

The pipeline hands a stage its typed Config and gets its typed Result back. In-process, the
objects pass as they are; as a deployment run, they cross as JSON (the flow's parameters and its
persisted result) and are validated back on each side. Which of the two happens is a
configuration choice (`execution.stages`), not a second code path. Component modules are
imported only when a stage runs, so importing this module never loads TensorFlow.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from components import settings
from components.config import ExecutionConfig, Strict
from components.contracts import STAGES, stage

__all__ = ["STAGES", "StageFailed", "run_component", "run_stage", "stage_flow"]


class StageFailed(RuntimeError):
    """A stage's deployment run ended in a state other than Completed."""


def run_component(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The JSON boundary of a stage run as its own process: JSON config in, JSON result out."""
    spec = stage(name)
    return spec.run(spec.config.model_validate(config)).model_dump(mode="json")


# JSON results: the parent may run another image (another Python, another TensorFlow) than the
# stage, and reads the persisted result from the shared result storage.
@flow(name="detector-stage", persist_result=True, result_serializer="json", log_prints=True)
def stage_flow(stage: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run one pipeline stage (validate, shard, train, evaluate, register, sync) from its JSON config."""
    settings.apply()
    return run_component(stage, config)


def run_stage(execution: ExecutionConfig, name: str, config: Strict) -> Strict:
    """In-process, or as a run of the stage's deployment that this flow waits for."""
    spec = stage(name)
    if execution.stages == "in-process":
        return spec.run(config)
    from prefect.deployments import run_deployment

    image = execution.gpu_image if spec.image == "gpu" else spec.image
    deployment = execution.deployment.format(image=image)
    parameters = {"stage": name, "config": config.model_dump(mode="json")}
    flow_run = run_deployment(deployment, parameters=parameters, timeout=execution.timeout_seconds)
    if not flow_run.state or not flow_run.state.is_completed():
        state = flow_run.state.name if flow_run.state else "unknown"
        raise StageFailed(f"Stage {name} ran as {deployment} (flow run {flow_run.name}) and ended {state}: see that run's logs.")
    return spec.result.model_validate(flow_run.state.result())
