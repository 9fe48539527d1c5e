"""infra/kubernetes/scale: the RayCluster and the TrainJob against their operators' CRD schemas
(tests/infra/crds.py), the pods they start against the restricted standard, and the TrainJob
manifest against the function the Kubeflow pipeline builds its TrainJobs with."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kfp_pipeline.trainjob import TrainJobShape, trainjob_body
from tests.infra.conftest import KUBERNETES_DIR, tool
from tests.infra.crds import KUBERNETES_VERSIONS, validate_strictly
from tests.infra.test_kubernetes import restricted_violations

SCALE_DIR = KUBERNETES_DIR / "scale"
# The flow-run jobs' volume and mount (base-job-template.json): the Ray pods must see the same paths.
JOB_TEMPLATE = json.loads((KUBERNETES_DIR / "base-job-template.json").read_text())


def documents(name: str) -> list[dict]:
    return [document for document in yaml.safe_load_all((SCALE_DIR / name).read_text()) if document]


def raycluster() -> dict:
    return next(document for document in documents("raycluster.yaml") if document["kind"] == "RayCluster")


def trainjob() -> dict:
    [document] = documents("trainjob.yaml")
    return document


def ray_pods(cluster: dict) -> dict[str, dict]:
    spec = cluster["spec"]
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    pods.update({f"worker {group['groupName']}": group["template"]["spec"] for group in spec["workerGroupSpecs"]})
    return pods


def trainjob_pod(job: dict) -> dict:
    """The pod Trainer makes from the jax-distributed runtime (a bare container `node`, upstream's
    manifests/base/runtimes/jax_distributed.yaml) with the TrainJob's trainer fields and patches merged in."""
    trainer = job["spec"]["trainer"]
    [patch] = job["spec"]["runtimePatches"]
    [node_job] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = copy.deepcopy(node_job["template"]["spec"]["template"]["spec"])
    [container_patch] = pod.pop("containers")
    env = [*trainer["env"], {"name": "JAX_NUM_PROCESSES", "value": str(trainer["numNodes"])}]
    env.append(
        {
            "name": "JAX_PROCESS_ID",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}},
        }
    )
    container = {
        "name": "node",
        "image": trainer["image"],
        "command": trainer["command"],
        "env": env,
        "resources": trainer["resourcesPerNode"],
    }
    pod["containers"] = [{**container, **container_patch}]
    pod["restartPolicy"] = "OnFailure"
    return pod


@pytest.mark.parametrize("manifest", ["raycluster.yaml", "trainjob.yaml"])
def test_manifest_matches_its_crd_schema(manifest: str):
    for document in documents(manifest):
        validate_strictly(document)


@pytest.mark.parametrize(
    ("manifest", "path", "misspelt"),
    [
        ("raycluster.yaml", ["spec", "headGroupSpec"], "rayStartParam"),
        ("raycluster.yaml", ["spec", "workerGroupSpecs", 0, "template", "spec", "containers", 0], "imagePullPolicyy"),
        ("trainjob.yaml", ["spec", "trainer"], "numNode"),
        ("trainjob.yaml", ["spec", "runtimePatches", 0, "trainingRuntimeSpec", "template", "spec", "replicatedJobs", 0], "templates"),
    ],
)
def test_validation_rejects_a_misspelt_field(manifest: str, path: list, misspelt: str):
    # The schemas refuse unknown fields as the API server's strict field validation does: check they can fail.
    resource = copy.deepcopy(
        next(document for document in documents(manifest) if "ray.io" in document["apiVersion"] or "trainer" in document["apiVersion"])
    )
    target = resource
    for key in path:
        target = target[key]
    target[misspelt] = {}
    with pytest.raises(jsonschema.ValidationError, match=misspelt):
        validate_strictly(resource)


def test_trainjob_name_must_be_a_dns_label_as_trainers_rule_says():
    broken = copy.deepcopy(trainjob())
    broken["metadata"]["name"] = "Detector_Train"
    with pytest.raises(jsonschema.ValidationError):
        validate_strictly(broken)


def test_the_trainjob_manifest_is_what_the_pipeline_builds():
    job = trainjob()
    trainer = job["spec"]["trainer"]
    shape = TrainJobShape(
        image=trainer["image"], num_nodes=trainer["numNodes"], gpus_per_node=trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"]
    )
    assert job == trainjob_body(job["metadata"]["name"], trainer["command"], shape)


def test_trainjob_runs_the_training_stage_cli_on_a_config_in_the_work_volume_with_keras_on_jax():
    trainer = trainjob()["spec"]["trainer"]
    assert trainer["command"][:3] == ["python", "-m", "components.training.train"]
    assert trainer["command"][3] == "--config" and trainer["command"][4].startswith("/app/work/")
    assert {"name": "KERAS_BACKEND", "value": "jax"} in trainer["env"]
    assert trainer["image"].startswith("detector-gpu-jax:") and trainjob()["spec"]["runtimeRef"] == {"name": "jax-distributed"}
    settings = {line.split("=", 1)[0] for line in (KUBERNETES_DIR / "settings.env").read_text().splitlines() if "=" in line}
    credentials = {line.split("=", 1)[0] for line in (KUBERNETES_DIR / "credentials.env.example").read_text().splitlines() if "=" in line}
    for item in trainer["env"][1:]:
        source = item["valueFrom"]
        reference = source.get("configMapKeyRef") or source["secretKeyRef"]
        if reference.get("optional"):  # named in a comment of credentials.env.example, set only for MinIO and the like
            assert reference["key"] in (KUBERNETES_DIR / "credentials.env.example").read_text(), item
            continue
        known = settings if "configMapKeyRef" in source else credentials
        assert reference["key"] in known, item


def test_the_pod_trainer_makes_is_a_valid_pod_meeting_the_restricted_standard():
    pod = trainjob_pod(trainjob())
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "detector-train-node-0-0"}, "spec": pod}, version, strict=True
        )
    assert restricted_violations(pod) == []
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1


def test_ray_pods_meet_the_restricted_standard_and_set_their_resources():
    for name, pod in ray_pods(raycluster()).items():
        assert restricted_violations(pod) == [], name
        for container in pod["containers"]:
            assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"], name


def test_ray_pods_mount_the_work_volume_where_the_stage_jobs_do():
    job_pod = JOB_TEMPLATE["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    [job_mount] = job_pod["containers"][0]["volumeMounts"]
    claim = JOB_TEMPLATE["variables"]["properties"]["work_volume_claim"]["default"]
    for name, pod in ray_pods(raycluster()).items():
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["mountPath"]: mount["name"] for mount in pod["containers"][0]["volumeMounts"]}
        assert volumes[mounts[job_mount["mountPath"]]]["persistentVolumeClaim"]["claimName"] == claim, name


def test_ray_runs_the_cpu_image_and_the_head_keeps_its_dashboard_on_loopback():
    cluster = raycluster()
    images = {container["image"] for pod in ray_pods(cluster).values() for container in pod["containers"]}
    assert {image.split(":")[0] for image in images} == {"detector-cpu"}
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1" and head["rayStartParams"]["num-cpus"] == "0"
    assert {"name": "client", "containerPort": 10001} in head["template"]["spec"]["containers"][0]["ports"]
    assert cluster["spec"]["rayVersion"].startswith("2.60.")


def test_only_pods_of_the_namespace_may_reach_the_ray_cluster():
    [policy] = [document for document in documents("raycluster.yaml") if document["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/cluster": raycluster()["metadata"]["name"]}
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {}}]}]


def test_scale_kustomization_renders_valid_resources_in_the_detector_namespace(tmp_path: Path):
    folder = tmp_path / "scale"
    shutil.copytree(SCALE_DIR, folder)
    result = subprocess.run([tool("kubectl"), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resources = [document for document in yaml.safe_load_all(result.stdout) if document]
    assert {resource["kind"] for resource in resources} == {"RayCluster", "TrainJob", "NetworkPolicy"}
    for resource in resources:
        assert resource["metadata"]["namespace"] == "detector"
        validate_strictly(resource)


def test_the_default_stack_leaves_the_operator_kinds_out():
    # A cluster without KubeRay or Trainer would refuse the whole `kubectl apply -k infra/kubernetes`.
    resources = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())["resources"]
    assert not any(resource.startswith("scale") for resource in resources)
    assert set(yaml.safe_load((SCALE_DIR / "kustomization.yaml").read_text())["resources"]) == {"raycluster.yaml", "trainjob.yaml"}


def test_ray_pods_hold_no_credentials_or_settings():
    # Tasks only touch files on the volume; the stage's own job keeps the MLflow and S3 login.
    for name, pod in ray_pods(raycluster()).items():
        for container in pod["containers"]:
            assert "envFrom" not in container and "env" not in container, name
