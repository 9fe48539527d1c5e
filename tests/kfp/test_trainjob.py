"""kfp_pipeline/trainjob.py: the TrainJob body the pipeline creates, how Trainer's status is read,
and the launcher's wait, on real-shaped objects and a stand-in for the Kubernetes API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kfp_pipeline import trainjob
from kfp_pipeline.trainjob import TrainJobFailed, TrainJobShape, stage_command, trainjob_body, trainjob_finished, trainjob_name, wait_for
from tests.infra.crds import validate_strictly
from tests.kfp.conftest import in_kfp_env

SHAPE = TrainJobShape(image="registry.example.com/detector-gpu-jax:0.1.0", num_nodes=4, gpus_per_node=8)
# Conditions as Trainer v2 writes them (metav1.Condition), from its controller and JobSet plugin.
CREATED = {
    "type": "Created",
    "status": "True",
    "reason": "JobsCreationSucceeded",
    "message": "Succeeded to create Jobs",
    "lastTransitionTime": "2026-09-01T03:00:05Z",
}
RESUMED = {
    "type": "Suspended",
    "status": "False",
    "reason": "Resumed",
    "message": "TrainJob is resumed",
    "lastTransitionTime": "2026-09-01T03:00:04Z",
}
COMPLETE = {
    "type": "Complete",
    "status": "True",
    "reason": "AllJobsCompleted",
    "message": "jobset completed successfully",
    "lastTransitionTime": "2026-09-01T05:12:40Z",
}
FAILED = {
    "type": "Failed",
    "status": "True",
    "reason": "FailedJobs",
    "message": "jobset failed due to one or more job failures",
    "lastTransitionTime": "2026-09-01T03:20:11Z",
}
JOBS = [{"name": "node", "ready": 1, "succeeded": 0, "failed": 0, "active": 1, "suspended": 0}]


def test_the_body_is_a_valid_trainjob_on_the_jax_runtime():
    body = trainjob_body("train-improved-3f2a9c1e", ["python", "-m", "components.kfp_stage", "train"], SHAPE, namespace="kubeflow")
    validate_strictly(body)
    trainer = body["spec"]["trainer"]
    assert body["spec"]["runtimeRef"] == {"name": "jax-distributed"} and body["metadata"]["namespace"] == "kubeflow"
    assert trainer["numNodes"] == 4 and trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 8
    assert trainer["image"] == SHAPE.image and {"name": "KERAS_BACKEND", "value": "jax"} in trainer["env"]
    secrets = {item["valueFrom"]["secretKeyRef"]["key"] for item in trainer["env"] if "secretKeyRef" in item.get("valueFrom", {})}
    assert secrets == set(SHAPE.secret_keys) | set(SHAPE.optional_secret_keys)


def test_the_body_mounts_the_work_volume_in_the_runtimes_node_container():
    [patch] = trainjob_body("train-baseline-1", ["true"], SHAPE)["spec"]["runtimePatches"]
    [node] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert node["name"] == "node" and pod["containers"][0]["name"] == "node"
    assert pod["volumes"] == [{"name": "work", "persistentVolumeClaim": {"claimName": "detector-work"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "work", "mountPath": "/app/work"}]


def test_a_shape_without_nodes_is_refused_naming_the_values():
    with pytest.raises(ValueError, match="num_nodes=0"):
        TrainJobShape(image="x", num_nodes=0, gpus_per_node=1)


def test_the_shape_survives_the_round_trip_through_the_launchers_argument():
    assert trainjob.shape_from_argument(trainjob.shape_argument(SHAPE)) == SHAPE


def test_names_are_short_dns_labels_one_per_run_and_variant():
    name = trainjob_name("improved", "3F2A9C1E-77b0-4c4e-9a53-0d6c2b1e8f00")
    assert name == "train-improved-3f2a9c1e"
    assert trainjob_name("improved", "") == "train-improved-manual"
    assert len(f"{name}-node-0-0") <= 63 and trainjob_name("baseline", "3f2a9c1e") != name


def test_a_job_without_status_or_still_running_is_not_finished():
    assert trainjob_finished("train-x", None) is False
    assert trainjob_finished("train-x", {"conditions": [RESUMED, CREATED], "jobsStatus": JOBS}) is False


def test_a_complete_job_is_finished():
    assert trainjob_finished("train-x", {"conditions": [RESUMED, CREATED, COMPLETE]}) is True


def test_a_failed_job_raises_naming_the_job_reason_and_message():
    with pytest.raises(TrainJobFailed, match=r"TrainJob train-x failed \(FailedJobs\): jobset failed due to one or more job failures"):
        trainjob_finished("train-x", {"conditions": [RESUMED, CREATED, FAILED]})


def test_a_failed_condition_that_is_false_is_not_a_failure():
    assert trainjob_finished("train-x", {"conditions": [CREATED, {**FAILED, "status": "False"}]}) is False


class FakeApi:
    """CustomObjectsApi's three calls, answering a scripted series of statuses."""

    def __init__(self, statuses: list[dict]):
        self.statuses, self.calls = list(statuses), []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("get", group, version, namespace, plural, name))
        return {"metadata": {"name": name}, "status": self.statuses.pop(0)}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("delete", group, version, namespace, plural, name))
        return {}

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        raise AssertionError("not used here")


class FakeClock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_wait_polls_until_complete():
    api, clock = FakeApi([{"conditions": [CREATED]}, {"conditions": [CREATED]}, {"conditions": [CREATED, COMPLETE]}]), FakeClock()
    job = wait_for(api, "train-x", "kubeflow", timeout_seconds=600, poll_seconds=30, clock=clock, sleep=clock.sleep)
    assert job["status"]["conditions"][-1]["type"] == "Complete"
    assert clock.slept == [30, 30]
    assert api.calls[0] == ("get", "trainer.kubeflow.org", "v1alpha1", "kubeflow", "trainjobs", "train-x")


def test_wait_stops_at_the_first_failure():
    api, clock = FakeApi([{"conditions": [CREATED]}, {"conditions": [CREATED, FAILED]}]), FakeClock()
    with pytest.raises(TrainJobFailed, match="train-x"):
        wait_for(api, "train-x", "kubeflow", timeout_seconds=600, poll_seconds=30, clock=clock, sleep=clock.sleep)
    assert [call[0] for call in api.calls] == ["get", "get"]


def test_wait_past_its_timeout_deletes_the_job_and_says_so():
    api, clock = FakeApi([{"conditions": [CREATED]}] * 5), FakeClock()
    with pytest.raises(TrainJobFailed, match="did not finish within 60 s"):
        wait_for(api, "train-x", "kubeflow", timeout_seconds=60, poll_seconds=30, clock=clock, sleep=clock.sleep)
    assert api.calls[-1][0] == "delete" and api.calls[-1][-1] == "train-x"


def test_each_process_writes_its_own_result_after_the_runner():
    command = stage_command(["--", "python", "-m", "components.kfp_stage", "train", "--variant", "improved"], Path("/app/work/trainjobs/t"))
    assert command[:4] == ["python", "-m", "components.kfp_stage", "train"]
    assert command[-2:] == ["--result", "/app/work/trainjobs/t/result-$(JAX_PROCESS_ID).json"]
    with pytest.raises(ValueError, match="no stage command"):
        stage_command(["--"], Path("/app/work"))


def test_the_launcher_program_runs_alone_without_the_project():
    # The pipeline runs this file with `python -c` in a plain image: -I keeps the repository off sys.path.
    source = Path(trainjob.__file__).read_text()
    done = subprocess.run([sys.executable, "-I", "-c", source, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--shape" in done.stdout and "--timeout-seconds" in done.stdout


def test_a_retried_task_attaches_to_the_trainjob_it_created(kfp_python: str):
    # With the kubernetes client the launcher installs (.venv-kfp's): a 409 on create is not an error.
    code = """
from kubernetes.client.exceptions import ApiException
from kfp_pipeline.trainjob import create_or_attach

class Api:
    def create_namespaced_custom_object(self, *args):
        raise ApiException(status=409, reason="AlreadyExists")

create_or_attach(Api(), {"metadata": {"name": "train-improved-3f2a9c1e"}}, "kubeflow")

class Forbidden:
    def create_namespaced_custom_object(self, *args):
        raise ApiException(status=403, reason="Forbidden")

try:
    create_or_attach(Forbidden(), {"metadata": {"name": "t"}}, "kubeflow")
except ApiException as error:
    print("raised", error.status)
"""
    out = in_kfp_env(kfp_python, code)
    assert "already exists in kubeflow: waiting on it" in out and "raised 403" in out


def test_the_launcher_installs_the_kubernetes_client_the_tests_use(kfp_python: str):
    installed = in_kfp_env(kfp_python, "import kubernetes; print(kubernetes.__version__)").strip()
    pinned = in_kfp_env(kfp_python, "from kfp_pipeline.pipeline import LAUNCHER_PACKAGE; print(LAUNCHER_PACKAGE)").strip()
    assert pinned == f"kubernetes=={installed}"
