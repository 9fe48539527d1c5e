"""Regenerate the images' pinned requirement files (docker/requirements-*.txt).

    .venv/bin/python docker/lock_requirements.py            # all three
    .venv/bin/python docker/lock_requirements.py mlflow     # one

pip resolves each set without installing anything (`--dry-run --report`). The versions the
project's virtualenv already has are passed as constraints, so the CPU and GPU images get the
exact releases the test suite ran against, and only packages the venv lacks (the CUDA wheels,
psycopg2, prefect-kubernetes) are resolved fresh. Run it on Linux x86_64 with Python 3.11,
the images' platform: wheels and markers are resolved for the machine pip runs on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

DOCKER_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = DOCKER_DIR.parent
# The project's runtime dependencies come from pyproject.toml (`.`); the project itself is
# installed with --no-deps in the image, so it is left out of the lock.
PROJECT_NAME = "ai-image-detector"
# prefect-kubernetes is in the CPU and GPU images so one image serves as the Kubernetes
# worker and as the job it starts; 0.8 is the release that supports Prefect 3.9. Ray is in the CPU
# image so that its containers can be the RayCluster's nodes (infra/kubernetes/scale/), and in the GPU
# image because the tests stand the CPU lock in for it (tests/infra/test_docker.py).
REQUIREMENT_SETS = {
    "cpu": [".[ray]", "prefect-kubernetes==0.8.0"],
    "gpu": [".[gpu,ray]", "prefect-kubernetes==0.8.0"],
    "mlflow": ["mlflow[auth]==3.17.2", "boto3", "psycopg2-binary==2.9.*"],
}
HEADER = """\
# Pinned by docker/lock_requirements.py ({name} image): do not edit by hand; rerun the script.
# Resolved for Linux x86_64, CPython 3.11 (the images' platform). Requested: {requested}
"""


def installed_versions() -> str:
    """The venv's `name==version` lines, minus the editable project, as pip constraints."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return "\n".join(line for line in frozen.splitlines() if "==" in line and not line.startswith(PROJECT_NAME))


def resolve(requirements: list[str], constraints_file: Path) -> list[tuple[str, str]]:
    """(name, version) of every distribution pip would install for `requirements`."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        command += ["--disable-pip-version-check", "--report", str(report), "-c", str(constraints_file), *requirements]
        subprocess.run(command, check=True, cwd=PROJECT_ROOT)
        installs = json.loads(report.read_text())["install"]
    pins = {(item["metadata"]["name"].lower(), item["metadata"]["version"]) for item in installs}
    return sorted(pin for pin in pins if pin[0] != PROJECT_NAME)


def main(names: list[str]) -> None:
    unknown = sorted(set(names) - set(REQUIREMENT_SETS))
    if unknown:
        raise SystemExit(f"Unknown requirement set(s) {unknown}. Choose from {sorted(REQUIREMENT_SETS)}.")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
        constraints.write(installed_versions())
        constraints.flush()
        for name in names or REQUIREMENT_SETS:
            requested = REQUIREMENT_SETS[name]
            pins = resolve(requested, Path(constraints.name))
            lines = [f"{package}=={version}" for package, version in pins]
            target = DOCKER_DIR / f"requirements-{name}.txt"
            target.write_text(HEADER.format(name=name, requested=" ".join(requested)) + "\n".join(lines) + "\n")
            print(f"{target.relative_to(PROJECT_ROOT)}: {len(lines)} packages")


if __name__ == "__main__":
    main(sys.argv[1:])
