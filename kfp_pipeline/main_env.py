"""Calls into the main environment, from a kfp.local task. No kfp import here: the task's
executor imports this module while kfp.dsl is still initialising, and kfp.compiler would
import it back in a circle."""

import os
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The main environment's interpreter; DETECTOR_MAIN_PYTHON points elsewhere.
MAIN_PYTHON = REPO / ".venv" / "bin" / "python"


def with_repo_on_path(environ: dict[str, str]) -> dict[str, str]:
    return {**environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))}


def run_in_main_env(stage: str, inputs: dict[str, str]) -> str:
    """`python -m components.kfp_stage <stage> …` in the main environment, from the repository root; returns its JSON result."""
    python = os.environ.get("DETECTOR_MAIN_PYTHON") or str(MAIN_PYTHON)
    args = [f"--{name.replace('_', '-')}={value}" for name, value in inputs.items()]
    with tempfile.TemporaryDirectory(prefix=f"kfp-local-{stage}-") as scratch:
        result = Path(scratch) / "result.json"
        command = [python, "-m", "components.kfp_stage", stage, *args, "--result", str(result)]
        subprocess.run(command, cwd=REPO, env=with_repo_on_path(dict(os.environ)), check=True)
        return result.read_text()
