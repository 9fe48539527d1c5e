"""`detector kfp compile | submit | local`: the stages as a Kubeflow Pipelines v2 pipeline.

kfp requires protobuf<7, below what TensorFlow is locked with, so it lives in its own virtualenv
(`make kfp-env` makes .venv-kfp). This module parses arguments without kfp; when the interpreter
running it has no kfp (the main environment, where `detector` lives), it hands the same command
to .venv-kfp's Python.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from kfp_pipeline.main_env import REPO, with_repo_on_path

KFP_PYTHON = REPO / ".venv-kfp" / "bin" / "python"
DEFAULT_PACKAGE = "work/kfp/detector-pipeline.yaml"
VARIANT_CHOICES = ("baseline", "improved")


def _variants(value: str) -> tuple[str, ...]:
    variants = tuple(part.strip() for part in value.split(",") if part.strip())
    if not variants or set(variants) - set(VARIANT_CHOICES):
        raise argparse.ArgumentTypeError(f"expected baseline, improved or baseline,improved. Received: {value!r}")
    return variants


def _json_object(value: str) -> str:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}). Received: {value!r}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object. Received: {value!r}")
    return value


def _add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", type=_variants, default=VARIANT_CHOICES, help="baseline, improved, or both (default).")


def _add_image_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", default="", help="Registry prefix of the images, e.g. registry.example.com/ml.")
    parser.add_argument("--tag", default="", help="Image tag (default: the project version in pyproject.toml, as docker/ builds it).")
    parser.add_argument("--cpu-image", default="", help="Full CPU image reference; wins over --registry/--tag.")
    parser.add_argument("--gpu-image", default="", help="Full GPU image reference; wins over --registry/--tag.")
    parser.add_argument("--jax-image", default="", help="Full JAX GPU image reference (TrainJob training); wins over --registry/--tag.")


def _add_trainjob_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trainjob-nodes",
        type=int,
        default=0,
        help="Train each variant as a Kubeflow Trainer TrainJob (runtime jax-distributed) on this many nodes; 0 (default): one pod.",
    )
    parser.add_argument("--gpus-per-node", type=int, default=1, help="nvidia.com/gpu per TrainJob node (default: %(default)s).")


def _add_run_parameters(parser: argparse.ArgumentParser, profile: str) -> None:
    parser.add_argument("--profile", choices=("demo", "full"), default=profile, help="Default: %(default)s.")
    parser.add_argument("--data", default="", help="Dataset root (a path the stages see, or s3://bucket/prefix).")
    parser.add_argument(
        "--overrides", type=_json_object, default="{}", help='Pipeline config overrides, JSON: {"variant": {"fit": {"epochs": 2}}}.'
    )


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="detector kfp", description=__doc__.strip().split("\n\n")[0])
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    compile_ = commands.add_parser("compile", help="Write the pipeline package (IR YAML) for a Kubeflow cluster.")
    compile_.add_argument("--output", type=Path, default=Path(DEFAULT_PACKAGE), help="Default: %(default)s.")
    _add_pipeline_options(compile_)
    _add_image_options(compile_)
    _add_trainjob_options(compile_)
    submit = commands.add_parser("submit", help="Compile, upload, start a run, and schedule the weekly retrain on a KFP endpoint.")
    submit.add_argument("--host", default=os.environ.get("KFP_HOST", ""), help="KFP API endpoint (default: $KFP_HOST). Token: $KFP_TOKEN.")
    submit.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user clusters).")
    submit.add_argument("--experiment", default="detector", help="Default: %(default)s.")
    submit.add_argument("--no-schedule", action="store_true", help="Start the run only; no weekly recurring run.")
    submit.add_argument("--output", type=Path, default=Path(DEFAULT_PACKAGE), help="The package uploaded (default: %(default)s).")
    _add_pipeline_options(submit)
    _add_image_options(submit)
    _add_trainjob_options(submit)
    _add_run_parameters(submit, profile="full")
    local = commands.add_parser("local", help="Run the pipeline here through kfp.local (no cluster, no docker).")
    local.add_argument("--outputs", type=Path, default=REPO / "work" / "kfp-local", help="kfp.local's task outputs (default: %(default)s).")
    _add_pipeline_options(local)
    _add_run_parameters(local, profile="demo")
    return main


def images(args: argparse.Namespace) -> dict[str, str]:
    from kfp_pipeline.pipeline import default_images

    chosen = default_images(args.registry, args.tag)
    return {"cpu": args.cpu_image or chosen["cpu"], "gpu": args.gpu_image or chosen["gpu"], "gpu-jax": args.jax_image or chosen["gpu-jax"]}


def trainjob(args: argparse.Namespace, chosen: dict[str, str]):
    """The TrainJob shape the options ask for, or None to train in one pod."""
    from kfp_pipeline.pipeline import trainjob_shape

    if args.trainjob_nodes <= 0:
        return None
    return trainjob_shape(chosen["gpu-jax"], args.trainjob_nodes, args.gpus_per_node)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if importlib.util.find_spec("kfp") is None:
        _hand_to_kfp_env(argv)
    if args.command == "compile":
        from kfp_pipeline.pipeline import compile_package

        chosen = images(args)
        print(compile_package(args.output, args.variants, chosen, trainjob(args, chosen)))
    elif args.command == "submit":
        from kfp_pipeline.submit import submit

        chosen = images(args)
        print(json.dumps(submit(args, chosen, trainjob(args, chosen)), indent=2))
    else:
        from kfp_pipeline.local import run_local

        if args.data and not args.data.startswith("s3://"):
            args.data = str(Path(args.data).resolve())  # the stages run from the repository root
        print(json.dumps(run_local(args.variants, args.profile, args.data, args.overrides, args.outputs), indent=2))


def _hand_to_kfp_env(argv: list[str]) -> None:
    python = os.environ.get("DETECTOR_KFP_PYTHON") or str(KFP_PYTHON)
    if not Path(python).exists():
        sys.exit(f"detector kfp: the kfp environment is missing. Received: {python}. Create it with `make kfp-env`.")
    command = [python, "-m", "kfp_pipeline.cli", *argv]
    sys.exit(subprocess.run(command, env=with_repo_on_path(dict(os.environ))).returncode)


if __name__ == "__main__":
    main()
