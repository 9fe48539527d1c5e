"""RuntimeConfig: how training runs, kept out of the variant and out of every cache and registry key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from components.config import RuntimeConfig, build_config, parse_overrides
from components.contracts import Manifest
from components.training import train


def test_runtime_settings_leave_the_variant_and_the_run_folder_unchanged():
    manifest = Manifest.model_construct(shard_key="k")  # all run_directory reads of it
    plain = build_config("improved", "demo")
    tuned = build_config(
        "improved",
        "demo",
        parse_overrides(
            ["runtime.precision=mixed_bfloat16", "runtime.distribution=data_parallel", "runtime.batch_per_device=64", "runtime.xla=on"]
        ),
    )
    assert tuned.runtime != plain.runtime and tuned.variant == plain.variant
    config = train.TrainConfig(pipeline=plain, manifest_path="m.json")
    assert train.run_directory(config, manifest) == train.run_directory(config.model_copy(update={"pipeline": tuned}), manifest)


def test_gpu_switches_are_no_longer_fit_settings():
    with pytest.raises(ValidationError, match="mixed_precision"):
        build_config("baseline", "full", {"variant": {"fit": {"mixed_precision": "on"}}})


def test_unknown_values_are_refused_naming_the_field():
    with pytest.raises(ValidationError, match="precision"):
        RuntimeConfig(precision="float8")
    with pytest.raises(ValidationError, match="backend"):
        RuntimeConfig(backend="torch")
