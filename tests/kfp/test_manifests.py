"""infra/kubernetes/kfp: kustomize's real rendering, checked against Kubernetes' schemas offline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import yaml

from tests.infra.conftest import tool
from tests.kfp.conftest import REPO

KFP_DIR = REPO / "infra" / "kubernetes" / "kfp"


def test_kustomize_renders_what_the_pipeline_names_from_the_example_credentials(tmp_path: Path):
    folder = tmp_path / "kfp"
    shutil.copytree(KFP_DIR, folder)
    shutil.copy(folder / "credentials.env.example", folder / "credentials.env")
    result = subprocess.run([tool("kubectl"), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resources = [document for document in yaml.safe_load_all(result.stdout) if document]
    for resource in resources:
        kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)
    kinds = {(resource["kind"], resource["metadata"]["name"]) for resource in resources}
    assert kinds == {("Secret", "detector-credentials"), ("ConfigMap", "detector-settings"), ("PersistentVolumeClaim", "detector-work")}
    assert {resource["metadata"]["namespace"] for resource in resources} == {"kubeflow"}


def test_kfp_credentials_file_is_git_ignored():
    assert subprocess.run(["git", "check-ignore", "-q", "infra/kubernetes/kfp/credentials.env"], cwd=REPO).returncode == 0


def test_the_trainjob_launcher_may_create_read_and_delete_trainjobs_only(tmp_path: Path):
    result = subprocess.run([tool("kubectl"), "kustomize", str(KFP_DIR / "trainjob")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resources = {resource["kind"]: resource for resource in yaml.safe_load_all(result.stdout) if resource}
    for resource in resources.values():
        kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)
    role, binding = resources["Role"], resources["RoleBinding"]
    assert role["rules"] == [{"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": ["create", "get", "delete"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    [subject] = binding["subjects"]
    # A ServiceAccount subject needs its namespace: the one the pipeline's pods, and so the launcher, run in.
    assert (subject["kind"], subject["name"], subject["namespace"]) == (
        "ServiceAccount",
        "pipeline-runner",
        binding["metadata"]["namespace"],
    )


def test_the_launcher_needs_no_verb_the_role_lacks():
    from kfp_pipeline import trainjob

    source = (REPO / "kfp_pipeline" / "trainjob.py").read_text()
    calls = {
        verb for verb in ("create", "get", "delete", "list", "patch", "watch", "replace") if f"{verb}_namespaced_custom_object" in source
    }
    role = yaml.safe_load_all((KFP_DIR / "trainjob" / "rbac.yaml").read_text())
    assert calls == set(next(role)["rules"][0]["verbs"])
    assert trainjob.GROUP == "trainer.kubeflow.org" and trainjob.PLURAL == "trainjobs"
