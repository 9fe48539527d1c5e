"""infra/kubernetes: the manifests against Kubernetes' published schemas (offline, from the
kubernetes-validate wheel), kustomize's real rendering, and the work-pool base job template
rendered by Prefect's own templating."""

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
from prefect.utilities.templating import apply_values
from prefect.workers.base import BaseJobConfiguration

from tests.infra.conftest import KUBERNETES_DIR, REPO, tool

# The oldest minor release still common on managed clusters, and the newest the wheel knows.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
TEMPLATE_PATH = KUBERNETES_DIR / "base-job-template.json"
# What a training deployment passes as job_variables: the GPU image and how many GPUs.
TRAINING_VALUES = {"image": "registry.example.com/detector-gpu:0.1.0", "gpu_count": 2, "name": "train-improved"}


def kustomization() -> dict:
    return yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())


def validate_strictly(resource: dict) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(resource, version, strict=True)


def prefect_default_kubernetes_template() -> dict:
    """What `prefect work-pool get-default-base-job-template --type kubernetes` prints offline:
    the copy of the collection registry Prefect's server falls back to without internet."""
    import prefect.server.api.collections as collections

    views = Path(collections.__file__).parent / "collections_data" / "views" / "aggregate-worker-metadata.json"
    return json.loads(views.read_text())["prefect-kubernetes"]["kubernetes"]["default_base_job_configuration"]


def render_job(values: dict) -> dict:
    """The Job manifest for a flow run with these job variables, resolved as a Prefect worker
    does: the variables' schema defaults, overridden by the deployment's values, then
    apply_values over the job configuration."""
    template = json.loads(TEMPLATE_PATH.read_text())
    jsonschema.validate(values, template["variables"])  # the server validates job_variables this way
    variables = BaseJobConfiguration._get_base_config_defaults(template["variables"]["properties"])
    variables.update(values)
    return apply_values(template["job_configuration"], variables)["job_manifest"]


def job_container(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("resource_file", kustomization()["resources"])
def test_manifest_matches_the_kubernetes_schema(resource_file: str):
    documents = [document for document in yaml.safe_load_all((KUBERNETES_DIR / resource_file).read_text()) if document]
    assert documents
    for document in documents:
        validate_strictly(document)


def test_validation_rejects_a_misspelt_field():
    # Strict validation is what catches typos; check it is able to fail.
    deployment = next(yaml.safe_load_all((KUBERNETES_DIR / "mlflow.yaml").read_text()))
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strictly(broken)


def test_every_manifest_in_the_folder_is_in_the_kustomization():
    # prefect.yaml is Prefect's deployment file, not a Kubernetes resource.
    on_disk = {path.name for path in KUBERNETES_DIR.glob("*.yaml")} - {"kustomization.yaml", "prefect.yaml"}
    assert on_disk == set(kustomization()["resources"])


def test_kustomize_renders_a_valid_stack_from_the_example_credentials(tmp_path: Path):
    resources = _rendered_stack(tmp_path)
    for resource in resources:
        validate_strictly(resource)
    kinds = {(resource["kind"], resource["metadata"]["name"]) for resource in resources}
    assert {("Secret", "detector-credentials"), ("ConfigMap", "work-pool-template"), ("Deployment", "prefect-worker")} <= kinds
    assert all(resource["metadata"].get("namespace") == "detector" for resource in resources if resource["kind"] != "Namespace")


def test_credential_files_are_git_ignored():
    for path in ("infra/kubernetes/credentials.env", "infra/kubernetes/mlflow-server.env"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0, path


def test_worker_runs_a_kubernetes_worker_on_the_mounted_template():
    worker = [document for document in yaml.safe_load_all((KUBERNETES_DIR / "prefect-worker.yaml").read_text())][-1]
    container = worker["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[command.index("--type") + 1] == "kubernetes"
    assert command[command.index("--base-job-template") + 1] == "/etc/detector/base-job-template.json"
    assert {"secretRef": {"name": "detector-credentials"}} in container["envFrom"]


def test_template_keeps_every_variable_and_field_of_prefects_default():
    ours, default = json.loads(TEMPLATE_PATH.read_text()), prefect_default_kubernetes_template()
    assert set(default["variables"]["properties"]) <= set(ours["variables"]["properties"])
    assert set(default["job_configuration"]) == set(ours["job_configuration"])


def test_training_job_requests_the_gpus_and_image_the_deployment_passes():
    manifest = render_job(TRAINING_VALUES)
    container = job_container(manifest)
    assert container["image"] == TRAINING_VALUES["image"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert {"secretRef": {"name": "detector-credentials"}} in container["envFrom"]
    validate_strictly(manifest)


def test_cpu_stage_job_defaults_to_the_cpu_image_and_no_gpu():
    manifest = render_job({"name": "validate"})
    container = job_container(manifest)
    assert container["image"] == "detector-cpu:0.1.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 0
    assert manifest["metadata"]["namespace"] == "detector"
    validate_strictly(manifest)


def test_job_runs_prefects_command_instead_of_the_image_entrypoint():
    # The images' ENTRYPOINT is `detector`; the worker puts `prefect flow-run execute` in args.
    container = job_container(render_job({**TRAINING_VALUES, "command": "prefect flow-run execute"}))
    assert container["command"] == ["env", "--"]
    assert container["args"] == "prefect flow-run execute"


def test_job_mounts_the_shared_work_volume_as_the_images_user():
    pod = render_job(TRAINING_VALUES)["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "work", "persistentVolumeClaim": {"claimName": "detector-work"}}]
    assert job_container({"spec": {"template": {"spec": pod}}})["volumeMounts"][0]["mountPath"] == "/app/work"
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["fsGroup"] == 10001


@pytest.mark.parametrize("bad_values", [{"gpu_count": -1}, {"gpu_count": "two"}, {"image_pull_policy": "Sometimes"}])
def test_invalid_job_variables_are_rejected(bad_values: dict):
    with pytest.raises(jsonschema.ValidationError):
        render_job(bad_values)


def test_cluster_deployments_give_only_the_training_stage_a_gpu():
    """infra/kubernetes/prefect.yaml's job variables through the pool's template."""
    project = yaml.safe_load((KUBERNETES_DIR / "prefect.yaml").read_text())
    gpus = {}
    for deployment in project["deployments"]:
        module, _, function = deployment["entrypoint"].partition(":")
        assert f"def {function}(" in (REPO / module).read_text(), deployment["entrypoint"]
        assert deployment["work_pool"]["name"] == "detector-k8s"
        container = job_container(render_job({**deployment["work_pool"]["job_variables"], "name": deployment["name"]}))
        gpus[deployment["name"]] = (container["image"], container["resources"]["limits"]["nvidia.com/gpu"])
    assert gpus.pop("gpu") == ("detector-gpu:0.1.0", 1)
    assert gpus.pop("gpu-jax") == ("detector-gpu-jax:0.1.0", 1)
    assert set(gpus.values()) == {("detector-cpu:0.1.0", 0)}
    assert project["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}]


def test_cluster_settings_run_each_stage_as_its_own_job():
    settings = dict(line.split("=", 1) for line in (KUBERNETES_DIR / "settings.env").read_text().splitlines() if "=" in line)
    assert settings["DETECTOR_STAGES"] == "deployments"
    assert settings["PREFECT_RESULTS_LOCAL_STORAGE_PATH"].startswith("/app/work/")  # on the shared volume


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def restricted_violations(pod: dict) -> list[str]:
    """What the `restricted` Pod Security Standard (the namespace enforces it) would reject in a pod spec."""
    problems = [f"host namespace {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    pod_context = pod.get("securityContext", {})
    for volume in pod.get("volumes", []):
        if not set(volume) - {"name"} <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']} of type {sorted(set(volume) - {'name'})}")
    for container in pod.get("initContainers", []) + pod["containers"]:
        name, context = container["name"], container.get("securityContext", {})
        merged = {**pod_context, **context}
        if not merged.get("runAsNonRoot") or merged.get("runAsUser") == 0:
            problems.append(f"{name}: may run as root")
        if merged.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: no RuntimeDefault seccomp profile")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities not dropped to none")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append(f"{name}: host port")
    return problems


def _pod_specs(resources: list[dict]) -> dict[str, dict]:
    return {
        f"{resource['kind']}/{resource['metadata']['name']}": resource["spec"]["template"]["spec"]
        for resource in resources
        if resource["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")
    }


def _rendered_stack(tmp_path: Path) -> list[dict]:
    folder = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES_DIR, folder)
    for example in folder.glob("*.env.example"):
        shutil.copy(example, folder / example.name.removesuffix(".example"))
    result = subprocess.run([tool("kubectl"), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def test_the_namespace_enforces_the_restricted_pod_security_standard():
    namespace = yaml.safe_load((KUBERNETES_DIR / "namespace.yaml").read_text())
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_pod_the_stack_and_its_flow_run_jobs_create_meets_the_restricted_standard(tmp_path: Path):
    pods = _pod_specs(_rendered_stack(tmp_path))
    assert {"Deployment/mlflow", "Deployment/prefect-worker", "Deployment/detector-serve", "Job/mlflow-users"} <= set(pods)
    pods["flow-run training job"] = render_job(TRAINING_VALUES)["spec"]["template"]["spec"]
    pods["flow-run cpu job"] = render_job({"name": "validate"})["spec"]["template"]["spec"]
    assert {name: restricted_violations(pod) for name, pod in pods.items() if restricted_violations(pod)} == {}


def test_the_restricted_check_can_fail():
    pod = copy.deepcopy(render_job(TRAINING_VALUES)["spec"]["template"]["spec"])
    del pod["securityContext"]["seccompProfile"]
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_violations(pod)) == 3


def test_worker_and_jobs_log_in_to_mlflow_as_the_pipeline_user_not_the_admin(tmp_path: Path):
    from components.settings import read_env_file

    pipeline = read_env_file(KUBERNETES_DIR / "credentials.env.example")
    server = read_env_file(KUBERNETES_DIR / "mlflow-server.env.example")
    assert pipeline["MLFLOW_TRACKING_USERNAME"] != server["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert server["MLFLOW_AUTH_ADMIN_PASSWORD"] not in pipeline.values()
    resources = _rendered_stack(tmp_path)
    [job] = [resource for resource in resources if resource["kind"] == "Job" and resource["metadata"]["name"] == "mlflow-users"]
    env = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in job["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in item
    }
    assert env["MLFLOW_TRACKING_PASSWORD"] == {"name": "mlflow-server", "key": "MLFLOW_AUTH_ADMIN_PASSWORD"}
    assert env["MLFLOW_PIPELINE_PASSWORD"] == {"name": "detector-credentials", "key": "MLFLOW_TRACKING_PASSWORD"}


@pytest.mark.parametrize(
    ("manifest", "secret_file"), [("mlflow.yaml", "mlflow-server.env.example"), ("prefect-worker.yaml", "credentials.env.example")]
)
def test_pods_refuse_to_start_with_the_example_secrets(manifest: str, secret_file: str):
    from components.settings import read_env_file

    deployment = [document for document in yaml.safe_load_all((KUBERNETES_DIR / manifest).read_text()) if document["kind"] == "Deployment"][
        0
    ]
    [check] = deployment["spec"]["template"]["spec"]["initContainers"]
    assert {"secretRef": {"name": check["envFrom"][0]["secretRef"]["name"]}} in deployment["spec"]["template"]["spec"]["containers"][0][
        "envFrom"
    ]
    example = read_env_file(KUBERNETES_DIR / secret_file)
    refused = subprocess.run(check["command"], env={"PATH": "/usr/bin:/bin", **example}, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "change-me-" not in refused.stderr and "_PASSWORD" in refused.stderr
    real = {name: value.replace("change-me", "s3cr3t") for name, value in example.items()}
    assert subprocess.run(check["command"], env={"PATH": "/usr/bin:/bin", **real}, capture_output=True, timeout=30).returncode == 0


def test_the_service_is_ready_only_with_a_model_and_holds_only_its_mlflow_login(tmp_path: Path):
    resources = _rendered_stack(tmp_path)
    [deployment] = [item for item in resources if item["kind"] == "Deployment" and item["metadata"]["name"] == "detector-serve"]
    [service] = [item for item in resources if item["kind"] == "Service" and item["metadata"]["name"] == "detector-serve"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz" and "memory" in container["resources"]["limits"]
    assert container["args"][0] == "serve" and service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    secrets = {item["valueFrom"]["secretKeyRef"]["key"] for item in container["env"] if "secretKeyRef" in item.get("valueFrom", {})}
    assert secrets == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "DETECTOR_API_TOKEN"}, "no S3 or Prefect keys"
    assert "envFrom" not in container
