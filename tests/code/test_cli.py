from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.cli import STAGES, main

REPO = Path(__file__).resolve().parents[2]


def _detector(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "components.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize(
    "command", [[], *([name] for name in [*STAGES, "run", "compare", "demo"])], ids=lambda c: " ".join(c) or "detector"
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]):
    # In this process: a dozen interpreters importing TensorFlow for their help texts cost a
    # minute of CPU; the other tests here run `python -m components.cli` as a user would.
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert "usage: detector" in capsys.readouterr().out


def test_stage_cli_rejects_a_bad_value_naming_the_field(tmp_path: Path):
    result = _detector("validate", "--set", "data.image_size=8", cwd=tmp_path)
    assert result.returncode == 2
    assert "image_size" in result.stderr and "Received: image_size=8" in result.stderr


def test_stage_cli_reads_a_config_file_and_prints_its_result(tmp_path: Path):
    config = tmp_path / "demo.yaml"
    config.write_text(f"out_dir: {tmp_path / 'demo'}\ntrain_per_class: 4\ntest_per_class: 2\n")
    result = _detector("demo-data", "--config", str(config), "--set", "include_defects=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {"train": {"REAL": 4, "FAKE": 4}, "test": {"REAL": 2, "FAKE": 2}}


@pytest.mark.parametrize(
    ("given", "error"), [("baseline,fancy", "unknown variant(s) ['fancy']"), ("npr,npr", "two or more distinct variants")]
)
def test_compare_refuses_a_variant_list_it_cannot_run(given: str, error: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["compare", "--variants", given])
    assert error in capsys.readouterr().err
