"""Training across hosts as a Kubeflow Trainer v2 TrainJob: its body, how to read its status, and
the launcher that creates one and waits for it.

The `jax-distributed` ClusterTrainingRuntime starts one pod per node (`trainer.numNodes`), one
JAX process each, and sets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID. The
runtime's template is bare (a container `node` with an image), so the body patches in what every
detector job has: the work volume, the MLflow login, GPU tolerations and a restricted security
context. `trainjob_body` builds it for infra/kubernetes/scale/trainjob.yaml and for the pipeline.

Stdlib only at import: the pipeline runs this file as the launcher task's program
(`python -c SOURCE`, kfp_pipeline/pipeline.py) in a plain Python image with only `kubernetes`
installed, so it may import nothing of the project.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
RUNTIME = "jax-distributed"
# The runtime's replicated job and trainer container are both called `node` (Trainer's constants.Node).
NODE = "node"
WORK_MOUNT = "/app/work"
# The images' user (docker/*.Dockerfile): numeric, so runAsNonRoot holds without resolving a name.
USER_ID = 10001
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class TrainJobShape:
    """Where a TrainJob runs and with what, apart from its name and command."""

    image: str
    num_nodes: int
    gpus_per_node: int
    secret: str = "detector-credentials"
    secret_keys: tuple[str, ...] = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    settings: str = "detector-settings"
    settings_keys: tuple[str, ...] = ("MLFLOW_TRACKING_URI", "AWS_DEFAULT_REGION")
    # In the Secret only where set (MinIO or another S3-compatible store: credentials.env.example).
    optional_secret_keys: tuple[str, ...] = ("MLFLOW_S3_ENDPOINT_URL",)
    work_volume: str = "detector-work"
    cpu_per_node: str = "16"
    memory_per_node: str = "64Gi"
    labels: dict[str, str] = field(default_factory=lambda: {"app.kubernetes.io/part-of": "detector"})

    def __post_init__(self) -> None:
        if self.num_nodes < 1 or self.gpus_per_node < 0:
            raise ValueError(f"num_nodes must be >= 1 and gpus_per_node >= 0. Received: {self.num_nodes=}, {self.gpus_per_node=}")


class TrainJobFailed(RuntimeError):
    """The TrainJob ended with its Failed condition, or did not end in time."""


def trainjob_body(name: str, command: Sequence[str], shape: TrainJobShape, namespace: str | None = None) -> dict[str, Any]:
    """The TrainJob resource: `command` on `shape.num_nodes` pods of the JAX runtime."""
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": name, **shape.labels}}
    if namespace:
        metadata["namespace"] = namespace
    env = [{"name": "KERAS_BACKEND", "value": "jax"}]
    env += [{"name": key, "valueFrom": {"configMapKeyRef": {"name": shape.settings, "key": key}}} for key in shape.settings_keys]
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": shape.secret, "key": key}}} for key in shape.secret_keys]
    optional = shape.optional_secret_keys
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": shape.secret, "key": key, "optional": True}}} for key in optional]
    limits: dict[str, Any] = {"memory": shape.memory_per_node}
    if shape.gpus_per_node:
        limits["nvidia.com/gpu"] = shape.gpus_per_node
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": metadata,
        "spec": {
            "runtimeRef": {"name": RUNTIME},
            "trainer": {
                "numNodes": shape.num_nodes,
                "image": shape.image,
                "command": list(command),
                "env": env,
                "resourcesPerNode": {"requests": {"cpu": shape.cpu_per_node, "memory": shape.memory_per_node}, "limits": limits},
            },
            "runtimePatches": [
                {"manager": "detector", "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [_node_patch(shape)]}}}}
            ],
        },
    }


def _node_patch(shape: TrainJobShape) -> dict[str, Any]:
    """The runtime's bare `node` pod made like every other detector job: volume, security, GPU taints."""
    pod = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": USER_ID, "fsGroup": USER_ID, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "work", "persistentVolumeClaim": {"claimName": shape.work_volume}}],
        # GPU nodes are commonly tainted so that only pods asking for a GPU land there.
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": NODE,
                "volumeMounts": [{"name": "work", "mountPath": WORK_MOUNT}],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    }
    return {"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}


def trainjob_name(variant: str, kfp_run_id: str) -> str:
    """One name per pipeline run and variant, so a retried task finds its TrainJob again.

    Short: Trainer names the coordinator pod `<name>-node-0-0.<name>`, and a DNS label holds 63 characters.
    """
    run = "".join(character for character in kfp_run_id.lower() if character.isalnum())[:8] or "manual"
    return f"train-{variant}-{run}"


def trainjob_finished(name: str, status: dict[str, Any] | None) -> bool:
    """True once the TrainJob is Complete, False while it runs; raises TrainJobFailed when it failed.

    Trainer v2 writes metav1.Conditions: Created, Suspended, then Complete or Failed (reason
    FailedJobs from the JobSet, DeadlineExceeded, TrainingRuntimeNotSupported, ...).
    """
    conditions = {condition.get("type"): condition for condition in (status or {}).get("conditions", [])}
    failed = conditions.get("Failed", {})
    if failed.get("status") == "True":
        reason, message = failed.get("reason", "unknown reason"), failed.get("message", "no message")
        raise TrainJobFailed(f"TrainJob {name} failed ({reason}): {message}. See `kubectl describe trainjob {name}` and its pods' logs.")
    return conditions.get("Complete", {}).get("status") == "True"


class TrainJobApi(Protocol):
    """The three calls the launcher makes; kubernetes.client.CustomObjectsApi in the cluster, a fake in tests."""

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, body: dict) -> dict: ...
    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict: ...
    def delete_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict: ...


def wait_for(
    api: TrainJobApi,
    name: str,
    namespace: str,
    timeout_seconds: float,
    poll_seconds: float = 30,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until Complete (returns the TrainJob) or Failed; past the timeout, delete it so its GPUs are freed, and raise."""
    deadline = clock() + timeout_seconds
    while True:
        job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        if trainjob_finished(name, job.get("status")):
            return job
        if clock() >= deadline:
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            raise TrainJobFailed(
                f"TrainJob {name} did not finish within {timeout_seconds:.0f} s; deleted it. Received status: {job.get('status')}"
            )
        sleep(poll_seconds)


def create_or_attach(api: TrainJobApi, body: dict[str, Any], namespace: str) -> None:
    """Create the TrainJob; one of this name already there (a retried task) is waited on instead."""
    from kubernetes.client.exceptions import ApiException

    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    except ApiException as error:
        if error.status != 409:
            raise
        print(f"TrainJob {body['metadata']['name']} already exists in {namespace}: waiting on it.", flush=True)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="trainjob", description="Create a TrainJob for one variant's training and wait for it.")
    main.add_argument("--shape", required=True, help="TrainJobShape as JSON (the pipeline writes it at compile time).")
    main.add_argument("--variant", required=True)
    main.add_argument("--kfp-run-id", default="")
    main.add_argument("--timeout-seconds", type=float, default=48 * 3600)
    main.add_argument("--poll-seconds", type=float, default=30)
    main.add_argument("--result", type=Path, required=True, help="Where process 0's training result is copied (KFP's output file).")
    main.add_argument("stage_command", nargs=argparse.REMAINDER, help="After --: the stage runner each pod runs, without --result.")
    return main


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from kubernetes import client, config

    config.load_incluster_config()
    api = client.CustomObjectsApi()
    shape = shape_from_argument(args.shape)
    namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    name = trainjob_name(args.variant, args.kfp_run_id)
    results = Path(WORK_MOUNT) / "trainjobs" / name
    command = stage_command(args.stage_command, results)
    create_or_attach(api, trainjob_body(name, command, shape, namespace), namespace)
    print(f"Waiting for TrainJob {namespace}/{name}: {shape.num_nodes} nodes x {shape.gpus_per_node} GPUs.", flush=True)
    wait_for(api, name, namespace, args.timeout_seconds, args.poll_seconds)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text((results / "result-0.json").read_text())


def stage_command(remainder: Sequence[str], results: Path) -> list[str]:
    """The runner's command after `--`, writing each process's result apart: the kubelet expands
    $(JAX_PROCESS_ID) from the env the runtime sets, and process 0's file is the one passed on."""
    command = list(remainder[1:] if remainder[:1] == ["--"] else remainder)
    if not command:
        raise ValueError("no stage command after --. Received: nothing")
    return [*command, "--result", f"{results}/result-$(JAX_PROCESS_ID).json"]


def shape_argument(shape: TrainJobShape) -> str:
    return json.dumps(asdict(shape))


def shape_from_argument(text: str) -> TrainJobShape:
    fields = json.loads(text)
    keys = ("secret_keys", "settings_keys", "optional_secret_keys")
    return TrainJobShape(**{**fields, **{name: tuple(fields[name]) for name in keys}})


if __name__ == "__main__":
    main(sys.argv[1:])
