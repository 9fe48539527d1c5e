"""`detector`: one console script for every stage, the flows and the demo."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from components import settings
from components.config import DEMO_EPOCHS, PROFILES, VARIANTS, parse_overrides

# Stage commands hand their arguments to the component's own CLI (`python -m components.X`).
STAGES = {
    "demo-data": ("components.demo_data", "Generate the offline demo dataset (REAL crops vs simulated-generator FAKEs)."),
    "validate": ("components.validate", "Decode every image; quarantine the unusable, flag duplicates and leakage."),
    "shard": ("components.shard", "Split and write TFRecord shards plus manifest.json."),
    "train": ("components.train", "Train one variant from shards; resumable; logs to MLflow."),
    "evaluate": ("components.evaluate", "Test metrics at 0.5 and at the threshold tuned on validation."),
    "register": ("components.registry", "Register a model version; set @challenger, gate @champion."),
}


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STAGES:
        importlib.import_module(STAGES[argv[0]][0]).main(argv[1:])
        return
    args = _parser().parse_args(argv)
    settings.apply()
    args.handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description="Detect AI-generated images: train, compare, register, promote.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in STAGES.items():
        commands.add_parser(name, help=help_text, add_help=False)
    pipeline = commands.add_parser("run", help="Run the pipeline flow for one variant (validate → … → register).")
    pipeline.add_argument("--variant", choices=sorted(VARIANTS), default="improved")
    _add_flow_arguments(pipeline)
    pipeline.set_defaults(handler=_run_pipeline)
    compare = commands.add_parser("compare", help="Run both variants and print the report's comparison table.")
    _add_flow_arguments(compare)
    compare.set_defaults(handler=_run_compare)
    demo = commands.add_parser(
        "demo",
        help="The main job: make demo data, run both variants on the embedded default, print the comparison.",
        description=f"Demo profile: {json.dumps(PROFILES['demo'])}, epochs {DEMO_EPOCHS}.",
    )
    demo.add_argument("--data", default="work/demo-data", help="Where the demo dataset goes (default: %(default)s).")
    demo.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="Pipeline config override, e.g. variant.fit.epochs=2."
    )
    demo.set_defaults(handler=_run_demo)
    return parser


def _add_flow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=sorted(PROFILES), default="demo", help="Default: %(default)s.")
    parser.add_argument("--data", help="Dataset root: <root>/{train,test}/{REAL,FAKE}.")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="Pipeline config override, e.g. variant.fit.epochs=2; repeatable."
    )


def _overrides(args: argparse.Namespace) -> dict:
    overrides = parse_overrides(args.set)
    if args.data:
        overrides.setdefault("data", {})["root"] = args.data
    return overrides


def _run_pipeline(args: argparse.Namespace) -> None:
    from flows.pipeline import train_pipeline

    summary = train_pipeline(variant=args.variant, profile=args.profile, overrides=_overrides(args))
    print(json.dumps({key: summary[key] for key in ("trained", "evaluated", "registered")}, indent=2))


def _run_compare(args: argparse.Namespace) -> dict:
    from flows.pipeline import compare_variants

    outcome = compare_variants(profile=args.profile, overrides=_overrides(args))
    positive = outcome["results"]["improved"]["evaluated"]["positive_class"]
    print(f"\nTest metrics (positive class {positive}; tuned_* at the threshold tuned on validation):\n")
    print(outcome["comparison"]["markdown"])
    print("\nMLflow runs:")
    print(f"  parent (comparison)  {outcome['parent_run_id']}")
    for variant, result in outcome["results"].items():
        registered = result["registered"]
        print(
            f"  {variant:<20} {result['trained']['run_id']}  test AUC {result['evaluated']['test']['test_auc']:.3f}  "
            f"-> {registered['registered_model']} v{registered['version']} ({registered['decision']})"
        )
    return outcome


def _run_demo(args: argparse.Namespace) -> None:
    from components import demo_data

    print(f"Writing demo data to {args.data} …")
    demo_data.run(demo_data.DemoDataConfig(out_dir=args.data))
    args.profile = "demo"
    _run_compare(args)
    uri = os.environ["MLFLOW_TRACKING_URI"]
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///")).resolve()
        print(f"\nOpen the MLflow UI:  .venv/bin/mlflow ui --backend-store-uri sqlite:///{store}  →  http://127.0.0.1:5000")
    else:
        print(f"\nOpen the MLflow UI at {uri}")


if __name__ == "__main__":
    main()
