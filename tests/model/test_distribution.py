"""Multi-device training: MirroredStrategy on two logical CPUs, and the learning-rate rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from components import accelerator, shard, validate
from components.config import FitConfig

CHECK = Path(__file__).with_name("distributed_check.py")


@pytest.mark.parametrize(("rule", "expected"), [("sqrt", 2e-4), ("linear", 4e-4), ("none", 1e-4)])
def test_learning_rate_scales_with_the_global_batch(rule, expected):
    assert accelerator.scaled_learning_rate(1e-4, 32, 128, rule) == pytest.approx(expected)


def test_cpu_only_host_keeps_the_single_device_path():
    placement = accelerator.resolve(FitConfig())
    assert (placement.replicas, placement.global_batch_size, placement.learning_rate) == (1, 32, 1e-4)
    assert not placement.mixed_precision and placement.jit_compile == "auto"


@pytest.mark.slow
def test_mirrored_on_two_cpus_matches_one_device_and_resumes(tiny_data_config, tmp_path, tracking_store):
    work_dir = str(tmp_path / "work")
    validated = validate.run(validate.ValidateConfig(data=tiny_data_config, work_dir=work_dir))
    sharded = shard.run(
        shard.ShardConfig(
            data=tiny_data_config, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=work_dir
        )
    )
    command = [sys.executable, str(CHECK), sharded.manifest_path, work_dir, tiny_data_config.model_dump_json()]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])

    mirrored, single = outcome["mirrored"], outcome["single"]
    assert (mirrored["replicas"], mirrored["global_batch_size"]) == (2, 16)
    assert (single["replicas"], single["global_batch_size"]) == (1, 16)
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-3)
    for distributed, local in zip(mirrored["head"], single["head"]):
        np.testing.assert_allclose(distributed, local, rtol=1e-3, atol=1e-5)
    assert outcome["resume"] == {"crashed": "simulated crash after epoch 1", "resumed_at_epoch": 1, "epochs_completed": 2}
