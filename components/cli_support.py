"""The one CLI shape every component shares: `--config FILE` plus `--set field=value` overrides.

Container entrypoints call these CLIs; the printed JSON result is what the next stage reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from components import settings
from components.config import deep_merge, parse_overrides

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def load_config_file(path: Path) -> dict[str, Any]:
    """JSON or YAML; YAML is a superset of JSON, so one parser serves both."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"Cannot read config file {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"Config file {path} must hold a mapping. Received: {type(data).__name__}")
    return data


def parse_config(config_cls: type[ConfigT], config_file: Path | None, assignments: Sequence[str]) -> ConfigT:
    data = load_config_file(config_file) if config_file else {}
    return config_cls.model_validate(deep_merge(data, parse_overrides(list(assignments))))


def component_main(
    prog: str, doc: str | None, config_cls: type[ConfigT], run: Callable[[ConfigT], BaseModel], argv: Sequence[str] | None = None
) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").strip().split("\n\n")[0])
    add_config_arguments(parser, config_cls)
    args = parser.parse_args(argv)
    try:
        cfg = parse_config(config_cls, args.config, args.set)
    except (ValidationError, ValueError) as error:
        parser.error(str(error))
    settings.apply()
    result = run(cfg)
    json.dump(result.model_dump(mode="json"), sys.stdout, indent=2)
    print()


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type[BaseModel]) -> None:
    fields = ", ".join(config_cls.model_fields)
    parser.add_argument("--config", type=Path, help=f"JSON or YAML file with {config_cls.__name__} fields: {fields}.")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="Override one field, dotted for nested ones (e.g. fit.epochs=3); repeatable; wins over --config.",
    )
