"""`detector kfp compile`: the IR that a Kubeflow cluster would run, read back and checked."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from tests.kfp.conftest import REPO, detector, in_kfp_env

STAGES = ("validate", "shard", "train", "evaluate", "register")
SECRET_KEYS = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def dockerfile_image(kind: str) -> str:
    """The `-t name:tag` that docker/<kind>.Dockerfile's header builds with."""
    header = (REPO / "docker" / f"{kind}.Dockerfile").read_text()
    return re.search(rf"docker build -f docker/{kind}\.Dockerfile -t (\S+) \.", header).group(1)


def compile_to(tmp_path: Path, *options: str) -> tuple[Path, dict, dict]:
    package = tmp_path / "pipeline.yaml"
    done = detector("kfp", "compile", "--output", str(package), *options)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(package)
    pipeline_spec, platform_spec = yaml.safe_load_all(package.read_text())
    return package, pipeline_spec, platform_spec


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory, kfp_python: str) -> tuple[Path, dict, dict]:
    return compile_to(tmp_path_factory.mktemp("kfp"))


def executors(spec: dict) -> dict[str, dict]:
    """Task name → its container, through the component the task runs."""
    tasks = spec["root"]["dag"]["tasks"]
    components = spec["components"]
    containers = spec["deploymentSpec"]["executors"]
    return {name: containers[components[task["componentRef"]["name"]]["executorLabel"]]["container"] for name, task in tasks.items()}


def task_names(spec: dict) -> dict[str, str]:
    """Display name (validate, train-improved, …) → the task's id in the DAG."""
    return {task["taskInfo"]["name"]: name for name, task in spec["root"]["dag"]["tasks"].items()}


def test_kfp_itself_loads_the_package(compiled, kfp_python: str):
    package, _, _ = compiled
    code = f"from kfp import components; c = components.load_component_from_file({str(package)!r}); print(c.name)"
    assert in_kfp_env(kfp_python, code).strip() == "detector-pipeline"


def test_every_stage_of_both_variants_runs_its_stage_cli(compiled):
    _, spec, _ = compiled
    names = task_names(spec)
    assert set(names) == {"validate"} | {f"{stage}-{variant}" for stage in STAGES[1:] for variant in ("baseline", "improved")}
    containers = executors(spec)
    for display, task in names.items():
        container = containers[task]
        assert container["command"] == ["python", "-m", "components.kfp_stage"]
        assert container["args"][0] == display.split("-")[0]
        assert "--kfp-run-id" in container["args"] and "--result" in container["args"]


def test_the_run_id_passed_to_every_stage_is_kfps_own(compiled):
    _, spec, _ = compiled
    for task in spec["root"]["dag"]["tasks"].values():
        assert task["inputs"]["parameters"]["kfp_run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def gpu_tolerations(platform: dict, spec: dict, task: str) -> list[dict]:
    label = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["executorLabel"]
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label].get("tolerations", [])


def test_only_training_requests_a_gpu_and_runs_in_the_gpu_image(compiled):
    _, spec, platform = compiled
    containers = executors(spec)
    for display, task in task_names(spec).items():
        container = containers[task]
        if display.startswith("train-"):
            assert container["image"] == dockerfile_image("gpu")
            accelerator = container["resources"]["accelerator"]
            assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1"
            assert [toleration["key"] for toleration in gpu_tolerations(platform, spec, task)] == ["nvidia.com/gpu"]
        else:
            assert container["image"] == dockerfile_image("cpu")
            assert "accelerator" not in container.get("resources", {})
            assert not gpu_tolerations(platform, spec, task)


def test_images_and_tag_are_options(tmp_path: Path, kfp_python: str):
    _, spec, _ = compile_to(tmp_path, "--registry", "registry.example.com/ml", "--tag", "2.0.1", "--variants", "improved")
    images = {task: container["image"] for task, container in executors(spec).items()}
    names = task_names(spec)
    assert set(names) == {"validate", *(f"{stage}-improved" for stage in STAGES[1:])}
    assert images[names["train-improved"]] == "registry.example.com/ml/detector-gpu:2.0.1"
    assert images[names["register-improved"]] == "registry.example.com/ml/detector-cpu:2.0.1"


def test_second_variant_shards_and_registers_after_the_first(compiled):
    _, spec, _ = compiled
    tasks, names = spec["root"]["dag"]["tasks"], task_names(spec)
    for stage in ("shard", "register"):
        assert names[f"{stage}-baseline"] in tasks[names[f"{stage}-improved"]]["dependentTasks"]
    assert names["train-baseline"] not in tasks[names["train-improved"]].get("dependentTasks", [])


def test_every_task_mounts_the_work_volume_and_reads_mlflow_settings_from_kubernetes(compiled):
    _, spec, platform = compiled
    configs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for task in spec["root"]["dag"]["tasks"].values():
        config = configs[spec["components"][task["componentRef"]["name"]]["executorLabel"]]
        assert [(mount["mountPath"], mount["pvcNameParameter"]["runtimeValue"]["constant"]) for mount in config["pvcMount"]] == [
            ("/app/work", "detector-work")
        ]
        (secret,) = config["secretAsEnv"]
        assert secret["secretNameParameter"]["runtimeValue"]["constant"] == "detector-credentials"
        assert {entry["secretKey"] for entry in secret["keyToEnv"]} == SECRET_KEYS
        (settings,) = config["configMapAsEnv"]
        assert "MLFLOW_TRACKING_URI" in {entry["configMapKey"] for entry in settings["keyToEnv"]}


def test_kubernetes_files_define_every_key_the_pipeline_reads(compiled):
    _, _, platform = compiled
    kfp_dir = REPO / "infra" / "kubernetes" / "kfp"
    example = {line.split("=", 1)[0] for line in (kfp_dir / "credentials.env.example").read_text().splitlines() if "=" in line}
    settings = {line.split("=", 1)[0] for line in (kfp_dir / "settings.env").read_text().splitlines() if "=" in line}
    config = next(iter(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()))
    assert {entry["secretKey"] for entry in config["secretAsEnv"][0]["keyToEnv"]} <= example
    assert {entry["configMapKey"] for entry in config["configMapAsEnv"][0]["keyToEnv"]} <= settings


def test_the_weekly_schedule_is_prefects(kfp_python: str):
    prefect = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (improved,) = [item for item in prefect["deployments"] if item["name"] == "train-improved"]
    cron = in_kfp_env(kfp_python, "from kfp_pipeline.submit import weekly_cron; print(weekly_cron())").strip()
    assert cron.split() == ["0", *improved["schedules"][0]["cron"].split()]


def test_unknown_variant_is_refused_naming_it(tmp_path: Path):
    done = detector("kfp", "compile", "--output", str(tmp_path / "p.yaml"), "--variants", "improved,fancy")
    assert done.returncode == 2 and "improved,fancy" in done.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_submit_without_an_endpoint_says_so(tmp_path: Path):
    env = {key: value for key, value in os.environ.items() if key != "KFP_HOST"}
    done = detector("kfp", "submit", env=env)
    assert done.returncode != 0 and "KFP_HOST" in done.stderr


def test_trainjob_option_trains_through_a_launcher_that_creates_the_trainjob(tmp_path: Path, kfp_python: str):
    _, spec, platform = compile_to(tmp_path, "--trainjob-nodes", "2", "--gpus-per-node", "4", "--registry", "registry.example.com/ml")
    containers, names = executors(spec), task_names(spec)
    configs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for variant in ("baseline", "improved"):
        task = names[f"train-{variant}"]
        launcher = containers[task]
        assert launcher["command"][:2] == ["sh", "-ec"] and "kubernetes==" in launcher["command"][2]
        assert "def trainjob_body(" in launcher["command"][3]  # kfp_pipeline/trainjob.py, run as the program
        args = launcher["args"]
        shape = json.loads(args[args.index("--shape") + 1])
        assert (shape["image"], shape["num_nodes"], shape["gpus_per_node"]) == ("registry.example.com/ml/detector-gpu-jax:0.1.0", 2, 4)
        assert set(shape["secret_keys"]) == SECRET_KEYS
        runner = args[args.index("--") + 1 :]
        assert runner[:4] == ["python", "-m", "components.kfp_stage", "train"] and "--result" not in runner
        assert "accelerator" not in launcher.get("resources", {}), "the TrainJob's pods hold the GPUs, not the launcher"
        label = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["executorLabel"]
        assert [mount["mountPath"] for mount in configs[label]["pvcMount"]] == ["/app/work"]
    assert containers[names["shard-improved"]]["command"] == ["python", "-m", "components.kfp_stage"]
    assert names["train-improved"] in {
        dependency for dependency in spec["root"]["dag"]["tasks"][names["evaluate-improved"]]["dependentTasks"]
    }


def test_without_the_trainjob_option_training_stays_one_pod(compiled):
    _, spec, _ = compiled
    assert all("trainjob" not in name for name in spec["components"])
