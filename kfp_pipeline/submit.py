"""Upload the pipeline to a KFP endpoint, start a run, and schedule the weekly retrain.

The schedule is Prefect's: the cron of the train-improved deployment in prefect.yaml, in KFP's
six-field form (seconds first). Submitting again uploads a new pipeline version and moves the
recurring run onto it, so a cluster never holds two weekly retrains of this pipeline.
"""

import argparse
import os
import time
from pathlib import Path

import yaml

from kfp_pipeline.main_env import REPO
from kfp_pipeline.pipeline import PIPELINE_NAME, compile_package
from kfp_pipeline.trainjob import TrainJobShape

RECURRING_RUN_NAME = "detector-weekly-retrain"
SCHEDULED_DEPLOYMENT = "train-improved"


def weekly_cron(prefect_yaml: Path = REPO / "prefect.yaml") -> str:
    """Prefect's five-field cron for the scheduled retrain, as KFP's six fields."""
    deployments = {item["name"]: item for item in yaml.safe_load(prefect_yaml.read_text())["deployments"]}
    schedules = deployments[SCHEDULED_DEPLOYMENT].get("schedules") or []
    if len(schedules) != 1 or len(schedules[0]["cron"].split()) != 5:
        raise ValueError(f"{prefect_yaml}: {SCHEDULED_DEPLOYMENT} needs one five-field cron schedule. Received: {schedules}")
    return f"0 {schedules[0]['cron']}"


def run_parameters(args: argparse.Namespace) -> dict[str, str]:
    return {"profile": args.profile, "data_root": args.data, "overrides": args.overrides}


def submit(args: argparse.Namespace, images: dict[str, str], trainjob: TrainJobShape | None = None) -> dict[str, str]:
    from kfp import Client

    if not args.host:
        raise SystemExit("detector kfp submit: no endpoint. Received: --host '' and no $KFP_HOST.")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    package = compile_package(args.output, args.variants, images, trainjob)
    client = Client(host=args.host, existing_token=os.environ.get("KFP_TOKEN") or None, namespace=args.namespace or "kubeflow")
    pipeline_id, version_id = _upload(client, package, f"{images['gpu'].rsplit(':', 1)[-1]}-{stamp}", args.namespace)
    experiment_id = client.create_experiment(args.experiment, namespace=args.namespace).experiment_id
    params = run_parameters(args)
    run = client.run_pipeline(
        experiment_id, f"detector-{stamp}", pipeline_id=pipeline_id, version_id=version_id, params=params, enable_caching=False
    )
    outcome = {"package": str(package), "pipeline_id": pipeline_id, "version_id": version_id, "run_id": run.run_id}
    if not args.no_schedule:
        outcome["cron"] = weekly_cron()
        outcome["recurring_run_id"] = _reschedule(client, experiment_id, pipeline_id, version_id, params, outcome["cron"])
    return outcome


def _upload(client, package: Path, version_name: str, namespace: str | None) -> tuple[str, str]:
    pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=PIPELINE_NAME, namespace=namespace).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc").pipeline_versions
        return pipeline_id, versions[0].pipeline_version_id
    version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id


def _reschedule(client, experiment_id: str, pipeline_id: str, version_id: str, params: dict[str, str], cron: str) -> str:
    existing = client.list_recurring_runs(experiment_id=experiment_id, page_size=100).recurring_runs or []
    for recurring in existing:
        if recurring.display_name == RECURRING_RUN_NAME:
            client.delete_recurring_run(recurring.recurring_run_id)
    recurring = client.create_recurring_run(
        experiment_id,
        RECURRING_RUN_NAME,
        description="The scheduled retraining (the cron of Prefect's train-improved deployment).",
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        params=params,
        pipeline_id=pipeline_id,
        version_id=version_id,
        enable_caching=False,
    )
    return recurring.recurring_run_id
