"""Scheduled batch scoring: the `score-folder` deployment (prefect.yaml). Wiring only: an s3://
prefix is mirrored by the sync stage, then the score stage scores the local copy with the
registry version (components/serving/score.py) and logs its rows and drift report to MLflow.

    python -m flows.score s3://detector-data/incoming --set format=parquet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from components import settings
from components.config import ExecutionConfig, parse_overrides
from components.contracts import ScoreConfig, SyncConfig
from flows.stages import run_stage


@flow(name="detector-score", log_prints=True)
def score_folder(images: str, work_dir: str = "work", overrides: dict[str, Any] | None = None) -> dict:
    """Score every image under `images` (a folder or an s3:// prefix) with @champion; `overrides`
    are ScoreConfig fields (model_uri, output_dir, format, psi_warning)."""
    settings.apply()
    settings.check_tracking_server()
    fields = {"output_dir": str(Path(work_dir) / "scores"), **(overrides or {})}
    cfg = ScoreConfig(images=images, **fields)  # a misspelt field fails here, before any work
    execution = ExecutionConfig()
    if images.startswith("s3://"):
        synced = run_stage(execution, "sync", SyncConfig(uri=images, cache_dir=str(Path(work_dir) / "s3-cache")))
        cfg = cfg.model_copy(update={"images": synced.local_root, "source": images})
    result = run_stage(execution, "score", cfg)
    for warning in result.drift_warnings:
        get_run_logger().warning("drift: %s", warning)
    return result.model_dump(mode="json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m flows.score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", help="A folder or an s3://bucket/prefix of images.")
    parser.add_argument("--work-dir", default="work", help="S3 cache and scores go under it (default: %(default)s).")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="ScoreConfig override; repeatable.")
    args = parser.parse_args(argv)
    print(json.dumps(score_folder(args.images, args.work_dir, parse_overrides(args.set)), indent=2))


if __name__ == "__main__":
    main()
