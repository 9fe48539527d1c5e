"""One pipeline stage as a Kubeflow Pipelines task: JSON in, the stage's CLI, JSON out.

KFP hands every task strings. This runner turns the pipeline's parameters (variant, profile,
data root, overrides) and the upstream stages' JSON results into the stage's config file, runs
`detector <stage> --config FILE` (the same CLI every container and `flows/` use), and writes the
stage's JSON result where KFP collects the task's output. The KFP run id reaches MLflow twice:
MLFLOW_RUN_CONTEXT tags every run the stage creates, and the trained run and registered version
get the tag explicitly, so a reused or resumed run carries the id of the KFP run that used it.

    python -m components.kfp_stage train --variant improved --profile full \\
        --sharded '{"manifest_path": …}' --kfp-run-id RUN --result /tmp/outputs/result
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components import settings
from components.config import PipelineConfig, Strict, build_config
from components.contracts import stage as stage_spec
from components.wiring import STAGES, localised, stage_config

# Each upstream result's option, and the stage whose Result it is.
UPSTREAM = {"validated": "validate", "sharded": "shard", "trained": "train", "evaluated": "evaluate"}
KFP_RUN_TAG = "kfp_run_id"


def pipeline_config(variant: str, profile: str, data_root: str, overrides: str) -> PipelineConfig:
    """The same composition as the Prefect flows: variant, then profile, then overrides."""
    try:
        changes = json.loads(overrides or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"overrides must be a JSON object ({error}). Received: overrides={overrides!r}") from None
    if not isinstance(changes, dict):
        raise ValueError(f"overrides must be a JSON object. Received: overrides={overrides!r}")
    if data_root:
        changes.setdefault("data", {})["root"] = data_root
    return build_config(variant, profile, changes)


def with_local_data(cfg: PipelineConfig, stage: str, kfp_run_id: str) -> PipelineConfig:
    """s3:// data (data.root and each data.test_sets entry), as the Prefect flow does it: mirrored
    into work_dir/s3-cache (by the validate task, which comes first), and every stage reads the mirror."""
    from components.data.s3data import split_uri

    def mirror(uri: str) -> str:
        sync = stage_config("sync", cfg.with_changes(data={"root": uri}))
        if stage == "validate":
            return run_stage_cli("sync", sync, kfp_run_id).local_root
        return str(Path(sync.cache_dir).joinpath(*split_uri(uri)))  # where sync put it

    return localised(cfg, mirror)


def run_stage_cli(name: str, config: Strict, kfp_run_id: str) -> Strict:
    """`detector <stage> --config FILE` in a child process; its log passes through, its result is the last JSON document."""
    env = {**os.environ, "MLFLOW_RUN_CONTEXT": json.dumps({KFP_RUN_TAG: kfp_run_id})} if kfp_run_id else dict(os.environ)
    with tempfile.TemporaryDirectory(prefix=f"kfp-{name}-") as scratch:
        config_path = Path(scratch) / "config.json"
        config_path.write_text(json.dumps(config.model_dump(mode="json")))
        command = [sys.executable, "-m", "components.cli", name, "--config", str(config_path)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as child:
            lines = []
            for line in child.stdout:
                sys.stdout.write(line)
                lines.append(line.rstrip("\n"))
        if child.returncode != 0:
            raise SystemExit(f"detector {name} exited with {child.returncode}; its log is above.")
    return stage_spec(name).result.model_validate(last_json_document(lines, name))


def last_json_document(lines: Sequence[str], stage: str) -> dict[str, Any]:
    """The stage CLI prints its result last, indented, starting with a bare `{` line; Keras' log lines never are one."""
    starts = [index for index, line in enumerate(lines) if line == "{"]
    if not starts:
        raise ValueError(f"detector {stage} printed no JSON result. Received the last lines: {list(lines[-5:])}")
    return json.loads("\n".join(lines[starts[-1] :]))


def upstream_results(texts: dict[str, str]) -> dict[str, Strict]:
    """The upstream options' JSON as the stages' typed Results; `{}` (KFP's default) is no result."""
    results = {}
    for name, text in texts.items():
        data = json.loads(text or "{}")
        if data:
            results[name] = stage_spec(UPSTREAM[name]).result.model_validate(data)
    return results


def tag_with_kfp_run(stage: str, result: Strict, kfp_run_id: str) -> None:
    # In a TrainJob every process runs this; the chief alone talks to MLflow (components/training/multihost.py).
    if not kfp_run_id or stage not in ("train", "register") or os.environ.get("JAX_PROCESS_ID", "0") != "0":
        return
    from mlflow import MlflowClient

    client = MlflowClient()
    if stage == "train":
        client.set_tag(result.run_id, KFP_RUN_TAG, kfp_run_id)
    else:
        client.set_model_version_tag(result.registered_model, result.version, KFP_RUN_TAG, kfp_run_id)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m components.kfp_stage", description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--variant", default="improved")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--data-root", default="", help="Dataset root; empty keeps the profile's or the overrides'.")
    parser.add_argument("--overrides", default="{}", help="JSON object of pipeline config overrides, as `detector run --set` takes.")
    for name in UPSTREAM:
        parser.add_argument(f"--{name}", default="{}", help=f"The {name} stage's JSON result.")
    parser.add_argument("--kfp-run-id", default="", help="Tagged on the MLflow run and the registered version.")
    parser.add_argument("--result", type=Path, required=True, help="Where the stage's JSON result is written (KFP's output file).")
    args = parser.parse_args(argv)
    settings.apply()
    try:
        cfg = pipeline_config(args.variant, args.profile, args.data_root, args.overrides)
        upstream = upstream_results({name: getattr(args, name) for name in UPSTREAM})
    except ValueError as error:  # a JSONDecodeError and a pydantic ValidationError are ValueErrors
        parser.error(str(error))
    cfg = with_local_data(cfg, args.stage, args.kfp_run_id)
    try:
        baseline = pipeline_config("baseline", args.profile, args.data_root, args.overrides).variant
        config = stage_config(args.stage, cfg, **upstream, baseline=baseline)
    except ValueError as error:
        parser.error(str(error))
    result = run_stage_cli(args.stage, config, args.kfp_run_id)
    tag_with_kfp_run(args.stage, result, args.kfp_run_id)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result.model_dump(mode="json")))


if __name__ == "__main__":
    main()
