"""Print the Kubernetes Job a Prefect kubernetes worker would submit for a training flow run.

Runs inside the CPU image's requirement set (tests/infra/check_images.sh), where
prefect-kubernetes is installed: the worker's own job configuration class renders the
work-pool template, as it does in the cluster, and the result is checked before printing.

    python tests/infra/render_k8s_job.py infra/kubernetes/base-job-template.json > job.json
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

from prefect.client.schemas.objects import FlowRun
from prefect.utilities.templating import apply_values
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

TRAINING_VALUES = {"image": "registry.example.com/detector-gpu:0.1.0", "gpu_count": 2}


def render(template: dict, values: dict) -> dict:
    """from_template_and_values without its API client, which only resolves block and
    variable references; this template has none."""
    variables = KubernetesWorkerJobConfiguration._get_base_config_defaults(template["variables"]["properties"])
    variables.update(values)
    configuration = KubernetesWorkerJobConfiguration(**apply_values(template["job_configuration"], variables))
    flow_run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="train-improved-run")
    configuration.prepare_for_flow_run(flow_run)
    return configuration.job_manifest


def main(template_path: str) -> None:
    manifest = render(json.loads(Path(template_path).read_text()), TRAINING_VALUES)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    problems = []
    if container["image"] != TRAINING_VALUES["image"]:
        problems.append(f"image {container['image']!r}")
    if container["resources"]["limits"].get("nvidia.com/gpu") != TRAINING_VALUES["gpu_count"]:
        problems.append(f"limits {container['resources']['limits']!r}")
    if container["command"] + container["args"] != ["env", "--", "prefect", "flow-run", "execute"]:
        problems.append(f"command {container['command']!r} args {container['args']!r}")
    if "PREFECT__FLOW_RUN_ID" not in {item["name"] for item in container["env"]}:
        problems.append("no PREFECT__FLOW_RUN_ID in env")
    if problems:
        raise SystemExit("rendered training job is wrong: " + "; ".join(problems))
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
