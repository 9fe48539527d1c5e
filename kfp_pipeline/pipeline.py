"""One pipeline definition, two ways to run its stages.

`build_pipeline` wires validate → shard → train → evaluate → register for each variant. What a
stage *is* comes from a `Stages` object: `ClusterStages` makes container components that run
`python -m components.kfp_stage <stage>` (which runs `detector <stage> --config …`) in the CPU or
GPU image, with the work volume, the MLflow Secret and settings, and the GPU on training;
`kfp_pipeline.local.LocalStages` makes lightweight components that call the same runner in the
main environment, for `kfp.local`. Compiled with a `TrainJobShape`, training instead runs that
runner on several hosts as a Kubeflow Trainer TrainJob, which a launcher task creates and waits on
(`kfp_pipeline/trainjob.py`). Results pass between tasks as JSON strings: on a container
component an `InputPath(str)` input fails (`param_type is not a parameter type`), a `str` does not.
"""

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kfp import compiler, dsl, kubernetes

from kfp_pipeline import trainjob
from kfp_pipeline.main_env import REPO
from kfp_pipeline.trainjob import TrainJobShape, shape_argument

PIPELINE_NAME = "detector-pipeline"
VARIANTS = ("baseline", "improved")
# Which image each stage runs in; training is the only stage that wants a GPU.
STAGE_IMAGES = {"validate": "cpu", "shard": "cpu", "train": "gpu", "evaluate": "cpu", "register": "cpu"}
# The images' names as docker/*.Dockerfile build them, tagged with the project's version.
IMAGE_NAMES = {"cpu": "detector-cpu", "gpu": "detector-gpu", "gpu-jax": "detector-gpu-jax"}
# The images' WORKDIR is /app and work_dir defaults to "work": the volume goes where stages write.
WORK_MOUNT = "/app/work"
# infra/kubernetes' names: the same Secret and settings as the Prefect jobs, and their keys.
SECRET_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
SETTINGS_KEYS = ("MLFLOW_TRACKING_URI", "AWS_DEFAULT_REGION", "MLFLOW_S3_ENDPOINT_URL")
RUNNER = ["python", "-m", "components.kfp_stage"]
# The TrainJob launcher: kfp_pipeline/trainjob.py run as a program in a plain Python image, with
# the kubernetes client the tests exercise it with (.venv-kfp's, a dependency of kfp itself).
LAUNCHER_IMAGE = "python:3.11.11-slim-bookworm"
LAUNCHER_PACKAGE = "kubernetes==30.1.0"
LAUNCHER_SCRIPT = (
    f"python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore '{LAUNCHER_PACKAGE}'"
    ' && exec python3 -c "$0" "$@"'
)


def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def default_images(registry: str = "", tag: str = "") -> dict[str, str]:
    """`detector-cpu:0.1.0`, `detector-gpu:0.1.0` and `detector-gpu-jax:0.1.0`, optionally under a registry prefix."""
    prefix = f"{registry.rstrip('/')}/" if registry else ""
    return {kind: f"{prefix}{name}:{tag or project_version()}" for kind, name in IMAGE_NAMES.items()}


class Stages(Protocol):
    def task(self, stage: str, name: str, **inputs: str) -> dsl.PipelineTask: ...


# A container component's ContainerSpec, from the stage runner's arguments (less `--result`), the
# task's result path, and its variant and KFP run id: KFP placeholders, filled in when the task runs.
SpecBuilder = Callable[[list, Any, Any, Any], dsl.ContainerSpec]


def _component(name: str, stage: str, spec: SpecBuilder):
    """A component taking the stage runner's inputs; KFP reads them from this signature."""

    def component(
        variant: str,
        profile: str,
        data_root: str,
        overrides: str,
        kfp_run_id: str,
        result: dsl.OutputPath(str),
        validated: str = "{}",
        sharded: str = "{}",
        trained: str = "{}",
        evaluated: str = "{}",
    ):
        args = _runner_args(stage, variant, profile, data_root, overrides, kfp_run_id, validated, sharded, trained, evaluated)
        return spec(args, result, variant, kfp_run_id)

    component.__name__ = component.__qualname__ = name
    return dsl.container_component(component)


def _container_component(stage: str, image: str):
    def spec(args: list, result: Any, *_: Any) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(image=image, command=RUNNER, args=[*args, "--result", result])

    return _component(stage, stage, spec)


def _runner_args(stage: str, variant, profile, data_root, overrides, kfp_run_id, validated, sharded, trained, evaluated) -> list:
    """`components.kfp_stage`'s arguments, less `--result`: KFP placeholders for the task's inputs."""
    upstream = {"validated": validated, "sharded": sharded, "trained": trained, "evaluated": evaluated}
    args = [stage, "--variant", variant, "--profile", profile, "--data-root", data_root, "--overrides", overrides]
    for name, value in upstream.items():
        args += [f"--{name}", value]
    return [*args, "--kfp-run-id", kfp_run_id]


def _trainjob_component(shape: TrainJobShape, timeout_seconds: int):
    """The train task as a launcher: it creates a TrainJob whose pods run the stage runner, waits, and hands on process 0's result."""
    source = Path(trainjob.__file__).read_text()

    def spec(runner: list, result: Any, variant: Any, kfp_run_id: Any) -> dsl.ContainerSpec:
        launcher = ["--shape", shape_argument(shape), "--variant", variant, "--kfp-run-id", kfp_run_id]
        launcher += ["--timeout-seconds", str(timeout_seconds), "--result", result]
        return dsl.ContainerSpec(
            image=LAUNCHER_IMAGE, command=["sh", "-ec", LAUNCHER_SCRIPT, source], args=[*launcher, "--", *RUNNER, *runner]
        )

    return _component("train_trainjob", "train", spec)


@dataclass
class ClusterStages:
    """Container components in the project's images, set up for a Kubeflow cluster."""

    images: dict[str, str] = field(default_factory=default_images)
    work_volume: str = "detector-work"
    secret: str = "detector-credentials"
    settings: str = "detector-settings"
    # Training as a TrainJob across hosts; None trains in one pod with one GPU.
    trainjob: TrainJobShape | None = None
    trainjob_timeout_seconds: int = 48 * 3600

    def task(self, stage: str, name: str, **inputs: str) -> dsl.PipelineTask:
        if stage == "train" and self.trainjob:
            task = _trainjob_component(self.trainjob, self.trainjob_timeout_seconds)(**inputs)
        else:
            task = _container_component(stage, self.images[STAGE_IMAGES[stage]])(**inputs)
        task.set_display_name(name)
        # Stages reuse their own work by content fingerprint; KFP's cache keys on parameters
        # only, and would replay last week's result after the data under the same root changed.
        task.set_caching_options(False)
        kubernetes.mount_pvc(task, pvc_name=self.work_volume, mount_path=WORK_MOUNT)
        if stage == "train" and self.trainjob:
            return task  # the launcher only reads process 0's result from the volume; the TrainJob's pods get the rest
        kubernetes.use_secret_as_env(task, self.secret, {key: key for key in SECRET_KEYS})
        kubernetes.use_config_map_as_env(task, self.settings, {key: key for key in SETTINGS_KEYS})
        if STAGE_IMAGES[stage] == "gpu":
            task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
            # GPU nodes are commonly tainted so that only pods asking for a GPU land there.
            kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        return task


def build_pipeline(stages: Stages, variants: tuple[str, ...] = VARIANTS):
    """The pipeline for these variants: one validation, then each variant's shard → train → evaluate → register.

    Shards and registrations of the two variants run one after the other, as in the Prefect
    compare flow: two shard tasks with the same key would write the same staging folder, and the
    second registration must see the first one's @champion. Training runs side by side.
    """
    unknown = sorted(set(variants) - set(VARIANTS))
    if not variants or unknown:
        raise ValueError(f"variants must be some of {list(VARIANTS)}. Received: variants={list(variants)}")

    @dsl.pipeline(name=PIPELINE_NAME, description=f"Validate, shard, train, evaluate and register: {', '.join(variants)}.")
    def detector_pipeline(profile: str = "full", data_root: str = "", overrides: str = "{}") -> str:
        common = {"profile": profile, "data_root": data_root, "overrides": overrides, "kfp_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
        validated = stages.task("validate", "validate", variant=variants[0], **common)
        shard_before = register_before = None
        for variant in variants:
            given = {"variant": variant, **common}
            sharded = stages.task("shard", f"shard-{variant}", validated=validated.output, **given)
            trained = stages.task("train", f"train-{variant}", sharded=sharded.output, **given)
            evaluated = stages.task("evaluate", f"evaluate-{variant}", sharded=sharded.output, trained=trained.output, **given)
            registered = stages.task(
                "register", f"register-{variant}", sharded=sharded.output, trained=trained.output, evaluated=evaluated.output, **given
            )
            if shard_before is not None:
                sharded.after(shard_before)
                registered.after(register_before)
            shard_before, register_before = sharded, registered
        return registered.output

    return detector_pipeline


def trainjob_shape(image: str, num_nodes: int, gpus_per_node: int) -> TrainJobShape:
    """A TrainJob with the same Secret, settings and volume as every other task of the pipeline."""
    return TrainJobShape(
        image=image,
        num_nodes=num_nodes,
        gpus_per_node=gpus_per_node,
        secret_keys=SECRET_KEYS,
        settings_keys=SETTINGS_KEYS,  # the S3 endpoint among them, so no optional Secret keys
        optional_secret_keys=(),
    )


def compile_package(
    output: Path, variants: tuple[str, ...] = VARIANTS, images: dict[str, str] | None = None, trainjob: TrainJobShape | None = None
) -> Path:
    """Write the pipeline's IR YAML, ready for `kfp` upload or the Kubeflow UI."""
    output.parent.mkdir(parents=True, exist_ok=True)
    stages = ClusterStages(images=images or default_images(), trainjob=trainjob)
    compiler.Compiler().compile(build_pipeline(stages, variants), package_path=str(output))
    return output
