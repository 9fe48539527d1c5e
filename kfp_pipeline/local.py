"""The same pipeline through `kfp.local`: no cluster, no docker.

kfp.local runs only lightweight Python components without docker, and this environment cannot
import TensorFlow (kfp holds protobuf below what TensorFlow is locked with). So each local task
is a lightweight component that calls the main environment's `python -m components.kfp_stage`:
the runner the containers run, which runs the stage's CLI and its `run(cfg)`.
"""

import json
import os
from pathlib import Path

from kfp import dsl, local

from kfp_pipeline.main_env import REPO, with_repo_on_path
from kfp_pipeline.pipeline import VARIANTS, build_pipeline


# No kfp install in the task: it runs in this interpreter, which has kfp, and offline.
@dsl.component(base_image="python:3.11", install_kfp_package=False)
def detector_stage(
    stage: str,
    variant: str,
    profile: str,
    data_root: str,
    overrides: str,
    kfp_run_id: str,
    validated: str = "{}",
    sharded: str = "{}",
    trained: str = "{}",
    evaluated: str = "{}",
) -> str:
    from kfp_pipeline.main_env import run_in_main_env

    upstream = {"validated": validated, "sharded": sharded, "trained": trained, "evaluated": evaluated}
    inputs = {"variant": variant, "profile": profile, "data_root": data_root, "overrides": overrides, "kfp_run_id": kfp_run_id}
    return run_in_main_env(stage, {**inputs, **upstream})


class LocalStages:
    """Every stage as the one lightweight component above, told which stage it is."""

    def task(self, stage: str, name: str, **inputs: str) -> dsl.PipelineTask:
        return detector_stage(stage=stage, **inputs).set_display_name(name)


def run_local(
    variants: tuple[str, ...] = VARIANTS, profile: str = "demo", data_root: str = "", overrides: str = "{}", outputs_dir: Path | None = None
) -> dict:
    """Run the pipeline with kfp.local's SubprocessRunner; returns the last variant's registration result."""
    # The task subprocesses import kfp_pipeline from the repository, whatever the caller's cwd.
    os.environ.update(with_repo_on_path(dict(os.environ)))
    outputs = outputs_dir or REPO / "work" / "kfp-local"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(outputs), raise_on_error=True)
    run = build_pipeline(LocalStages(), variants)(profile=profile, data_root=data_root, overrides=overrides)
    return json.loads(run.output)
