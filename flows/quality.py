"""`make quality`: train chosen variants on real data through the same pipeline flow, under one
MLflow parent run, and print the clean, calibration and robustness figures side by side.

    python -m flows.quality --data ../shared/data/cifake-dev --profile scratch --variants improved
    python -m flows.quality --data ../shared/data/xgen-dev --profile generalisation --variants npr \
        --test-set glid3=../shared/data/xgen-dev/generators/glid3
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow

from components import settings
from components.config import PROFILES, VARIANTS, PipelineConfig, build_config, parse_overrides
from flows.pipeline import train_pipeline


def start_parent_run(configs: dict[str, PipelineConfig], profile: str) -> str:
    """The MLflow run the variants' runs nest under, with the params a reader filters runs by."""
    from components import record
    from components.evaluation import compare

    first = next(iter(configs.values()))
    params = {**record.parent_params(first, profile), "variants": ",".join(configs)}
    return compare.start_parent_run(first.experiment_name, f"quality-{profile}", params)


@flow(name="detector-quality", log_prints=True)
def quality_run(variants: list[str], profile: str = "scratch", overrides: dict[str, Any] | None = None, force: bool = False) -> dict:
    settings.apply()
    settings.check_tracking_server()
    configs = {variant: build_config(variant, profile, overrides) for variant in variants}  # fail before any work
    parent_run_id = start_parent_run(configs, profile)
    results = {variant: train_pipeline(variant, profile, overrides, parent_run_id, force) for variant in variants}
    return {"parent_run_id": parent_run_id, "run_ids": {variant: result.run_id for variant, result in results.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m flows.quality", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default="../shared/data/cifake-dev", help="Dataset root <root>/{train,test}/{REAL,FAKE} (default: %(default)s)."
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="scratch", help="Default: %(default)s.")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["improved"], help="Default: %(default)s.")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="Pipeline config override; repeatable.")
    parser.add_argument(
        "--test-set", action="append", default=[], metavar="NAME=FOLDER", help="A held-out test set (data.test_sets); repeatable."
    )
    parser.add_argument("--force", action="store_true", help="Retrain even when these shards and configs are already registered.")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    overrides.setdefault("data", {})["root"] = args.data
    for given in args.test_set:
        name, _, folder = given.partition("=")
        overrides["data"].setdefault("test_sets", {})[name] = folder
    outcome = quality_run(args.variants, args.profile, overrides, args.force)

    from components.evaluation import quality

    metrics = quality.run_metrics(outcome["run_ids"])
    clean, robust = quality.summary(metrics)
    print(f"\nTest split of {args.data}, profile {args.profile} (ECE: expected calibration error, lower is better):\n")
    print(clean)
    print("\nRobustness (test AUC / accuracy at the tuned threshold, per degradation):\n")
    print(robust)
    if sets := quality.held_out(metrics):
        print("\nHeld-out test sets (AUC, and the share of AI-generated images caught at the tuned threshold):\n")
        print(sets)
    print(f"\nMLflow parent run: {outcome['parent_run_id']}")


if __name__ == "__main__":
    main()
