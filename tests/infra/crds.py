"""Offline validation of the custom resources under infra/kubernetes/scale: no cluster has the
CRDs here, and kubernetes-validate ships only Kubernetes' own kinds.

The trimmed CRD schemas (crd_schemas/, each with its source and version in `$comment`) hold the
operators' own fields and refer to Kubernetes' types (pod templates, env, volumes, resources) in
kubernetes-validate's strict definitions, so an embedded pod template is checked as strictly as
a Deployment's.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).parent / "crd_schemas"
SCHEMAS = {
    ("ray.io/v1", "RayCluster"): "raycluster-ray.io-v1.json",
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainjob-trainer.kubeflow.org-v1alpha1.json",
}
# The oldest minor release still common on managed clusters, and the newest the wheel knows.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


@cache
def _validator(schema_file: str, kubernetes_version: str) -> jsonschema.Draft202012Validator:
    definitions = kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{kubernetes_version}-local-strict/_definitions.json", kubernetes_version
    )
    registry = Resource.from_contents(definitions) @ Registry()
    schema = json.loads((SCHEMA_DIR / schema_file).read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_strictly(resource: dict) -> None:
    """Against the CRD schema for a custom kind, Kubernetes' own strict schema otherwise; for every version in KUBERNETES_VERSIONS."""
    schema_file = SCHEMAS.get((resource.get("apiVersion"), resource.get("kind")))
    for version in KUBERNETES_VERSIONS:
        if schema_file:
            _validator(schema_file, version).validate(resource)
        else:
            kubernetes_validate.validate(resource, version, strict=True)
