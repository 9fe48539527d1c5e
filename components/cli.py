"""`detector`: one console script for every stage, the flows and the demo."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from components import settings
from components.config import DEFAULT_REGISTERED_MODEL, DEMO_EPOCHS, PRIMARY_METRIC, PROFILES, VARIANTS, PipelineConfig, parse_overrides
from components.contracts import CHAMPION, ComparisonSummary
from components.contracts import STAGES as PIPELINE_STAGES

# Stage commands hand their arguments to the component's own CLI (`python -m components.<package>.<module>`): the
# pipeline's stages from the one stage table, plus the demo data and the Kubeflow commands.
STAGES = {
    "demo-data": ("components.data.demo_data", "Generate the offline demo dataset (REAL crops vs simulated-generator FAKEs)."),
    **{name: (stage.module, stage.help) for name, stage in PIPELINE_STAGES.items()},
    "serve": ("components.serving.service", "HTTP service and web page for a registered model; follows @champion as it moves."),
    "kfp": ("kfp_pipeline.cli", "Kubeflow Pipelines: compile, submit, or run locally (kfp runs in its own .venv-kfp)."),
}


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STAGES:
        importlib.import_module(STAGES[argv[0]][0]).main(argv[1:])
        return
    args = _parser().parse_args(argv)
    settings.apply()
    try:
        args.handler(args)
        sys.stdout.flush()  # here, so a closed pipe is met inside the try, not at interpreter exit
    except BrokenPipeError:
        # The reader went away (`detector predict DIR | head`): stop quietly, as Unix tools do
        # (the recipe in Python's signal docs: later writes go to /dev/null, not to a traceback).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description="Detect AI-generated images: train, compare, register, promote.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in STAGES.items():
        commands.add_parser(name, help=help_text, add_help=False)
    pipeline = commands.add_parser("run", help="Run the pipeline flow for one variant (validate → … → register).")
    pipeline.add_argument("--variant", choices=sorted(VARIANTS), default="improved")
    _add_flow_arguments(pipeline)
    pipeline.set_defaults(handler=_run_pipeline)
    compare = commands.add_parser("compare", help="Run variants on the same shards and print the report's comparison table.")
    compare.add_argument(
        "--variants",
        default="baseline,improved",
        type=_variant_list,
        help=f"Comma-separated, two or more of {sorted(VARIANTS)}; changes are relative to the first. Default: %(default)s.",
    )
    _add_flow_arguments(compare)
    compare.set_defaults(handler=_run_compare)
    predict = commands.add_parser("predict", help="Print, per image, the probability that it is AI-generated.")
    predict.add_argument("images", help="An image file or a folder (searched recursively).")
    predict.add_argument("--model-uri", default=None, help=f"Default: models:/<registered model>@{CHAMPION}.")
    predict.add_argument(
        "--crops", type=int, choices=(1, 5), default=1, help="data.fit=crop models: 5 averages the centre and corner crops. Default: 1."
    )
    predict.set_defaults(handler=_run_predict)
    models = commands.add_parser(
        "models", help="Registry: list versions, promote one to @champion, roll back to @previous (aliases: docs/registry.md)."
    )
    models.add_argument(
        "--name", default=None, help=f"Registered model (default: $DETECTOR_REGISTERED_MODEL or {DEFAULT_REGISTERED_MODEL})."
    )
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="Versions, newest first, with aliases, test figures and the promotion decision.")
    promote = actions.add_parser(
        "promote", help="Move @champion to VERSION if it passes the gate (a rolled-back version never does; --force with --reason can)."
    )
    promote.add_argument("version")
    promote.add_argument(
        "--metric", default=None, help=f"Gate metric (default: the one the version was registered under, normally {PRIMARY_METRIC})."
    )
    promote.add_argument("--force", action="store_true", help="Skip the gate; needs --reason, which is recorded on the version.")
    promote.add_argument("--reason")
    actions.add_parser("rollback", help="Give @champion back to @previous; the version it leaves is marked rolled back.")
    models.set_defaults(handler=_run_models)
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


def _variant_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if unknown := [name for name in names if name not in VARIANTS]:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; expected names from {sorted(VARIANTS)}")
    if len(set(names)) < 2:
        raise argparse.ArgumentTypeError(f"a comparison needs two or more distinct variants. Received: {text!r}")
    return names


def _overrides(args: argparse.Namespace) -> dict:
    overrides = parse_overrides(args.set)
    if args.data:
        overrides.setdefault("data", {})["root"] = args.data
    return overrides


def _run_pipeline(args: argparse.Namespace) -> None:
    from flows.pipeline import train_pipeline

    summary = train_pipeline(variant=args.variant, profile=args.profile, overrides=_overrides(args))
    shown = {"trained", "evaluated", "registered", *(("reused",) if summary.skipped else ())}
    print(json.dumps(summary.model_dump(mode="json", include=shown), indent=2))


def _run_compare(args: argparse.Namespace) -> ComparisonSummary:
    from flows.pipeline import compare_variants

    outcome = compare_variants(profile=args.profile, overrides=_overrides(args), variants=getattr(args, "variants", None))
    positive = next(iter(outcome.results.values())).positive_class
    print(f"\nTest metrics (positive class {positive}; test_tuned/* at the threshold tuned on validation):\n")
    print(outcome.comparison.markdown)
    print("\nMLflow runs:")
    print(f"  parent (comparison)  {outcome.parent_run_id}")
    for variant, result in outcome.results.items():
        print(
            f"  {variant:<20} {result.run_id}  test AUC {result.test['test/auc']:.3f}  "
            f"-> {result.registered_model} v{result.version} ({result.decision})"
        )
    return outcome


def _registered_model(name: str | None) -> str:
    return name or PipelineConfig().registered_model_name


def _run_predict(args: argparse.Namespace) -> None:
    from components.serving import predict

    uri = args.model_uri or f"models:/{_registered_model(None)}@{CHAMPION}"
    result = predict.run(predict.PredictConfig(images=args.images, model_uri=uri, crops=args.crops))
    print(f"# {uri}: label is {result.generated_class} (AI-generated) where P(AI-generated) > {result.threshold_p_ai:.4f}")
    print("p_ai_generated\tlabel\tpath")
    for row in result.predictions:
        print(f"{row.p_ai_generated:.4f}\t{row.label}\t{row.path}")
    for path, reason in result.skipped.items():
        print(f"skipped\t-\t{path}\t({reason})")


def _run_models(args: argparse.Namespace) -> None:
    from components.registry import catalog

    name = _registered_model(args.name)
    try:
        if args.action == "list":
            rows = catalog.list_versions(name)
            print(pd.DataFrame(rows).to_string(index=False) if rows else f"No versions of {name!r}.")
        elif args.action == "promote":
            print(f"{name} v{args.version} is @champion: {catalog.promote(name, args.version, args.metric, args.force, args.reason)}")
        else:
            print(f"{name} @champion rolled back to v{catalog.rollback(name)}")
    except (catalog.PromotionRefused, ValueError) as error:
        sys.exit(f"detector models {args.action}: {error}")


def _run_demo(args: argparse.Namespace) -> None:
    from mlflow import MlflowClient

    from components import record
    from components.data import demo_data

    print(f"Writing demo data to {args.data} …")
    demo_data.run(demo_data.DemoDataConfig(out_dir=args.data))
    args.profile = "demo"
    outcome = _run_compare(args)
    experiment_id = MlflowClient().get_run(outcome.parent_run_id).info.experiment_id
    uri = os.environ["MLFLOW_TRACKING_URI"]
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///")).resolve()
        print(f"\nOpen the MLflow UI:  .venv/bin/mlflow ui --backend-store-uri sqlite:///{store}")
        uri = "http://127.0.0.1:5000"
    print(f"Both variants with their test figures:  {record.runs_view_url(settings.redact(uri), experiment_id)}")


if __name__ == "__main__":
    main()
