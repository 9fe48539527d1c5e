#!/usr/bin/env bash
# tests/infra/check_images.sh [cpu] [mlflow] [gpu]   (all three by default; `make check-infra`)
# Install each image's pinned requirement set into a scratch virtualenv the way its Dockerfile
# does, then run what the image runs, so a broken install step or entrypoint fails CI without
# a docker engine:
#   cpu:    pip install -r docker/requirements-cpu.txt, the project with --no-deps, pip check,
#           `detector --help`, `detector train --help` (imports TensorFlow), the flows, and the
#           Job the Kubernetes worker would submit for a training run, schema-checked.
#   mlflow: the same install, then docker/mlflow-entrypoint.sh started and probed
#           (tests/infra/smoke_mlflow.py).
#   gpu:    resolution only (a dry run) of both GPU images' sets: TensorFlow's
#           (docker/requirements-gpu.txt) and JAX's (requirements-cpu.txt plus
#           requirements-gpu-jax.txt, as docker/gpu-jax.Dockerfile installs them). Their CUDA
#           wheels are gigabytes; the TensorFlow lock is the CPU lock plus nvidia-* wheels
#           (tests/infra/test_docker.py), so the CPU install and imports stand in for both.
# Installs go through uv (the .venv's own, `make install`): the same pinned sets pip would
# install, from uv's cache after the first run, in seconds where pip took minutes. uv compiles no
# bytecode (byte-compiling thousands of modules checks nothing the imports do not), so this script
# lets the first import of a module write it: where PYTHONDONTWRITEBYTECODE is set, as on this
# host, every later command and server worker would compile MLflow or TensorFlow from source again.
set -euo pipefail
unset PYTHONDONTWRITEBYTECODE
cd "$(dirname "$0")/../.."
VENV_PYTHON=${VENV_PYTHON:-.venv/bin/python} # Python 3.11, as in the images
UV=${UV:-.venv/bin/uv}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_PROGRESS=1

install() { # venv, install arguments
  local venv=$1
  shift
  "$UV" pip install --quiet --python "$venv/bin/python" "$@"
}

quiet() { # command...: its output only if it fails (TensorFlow logs to stderr before reading any level)
  "$@" >"$SCRATCH/output.log" 2>&1 || {
    cat "$SCRATCH/output.log" >&2
    return 1
  }
}

timed() { # label command...: run it and say how long it took
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "ok  $label ($((SECONDS - start)) s)"
}

check_cpu() {
  local venv=$SCRATCH/cpu app=$SCRATCH/app
  "$VENV_PYTHON" -m venv "$venv"
  install "$venv" -r docker/requirements-cpu.txt
  # The files the Dockerfile copies, built outside the checkout; the build backend
  # (pyproject's setuptools>=69) comes from the wheelhouse too.
  mkdir -p "$app"
  cp -r pyproject.toml README.md mlflow.env prefect.yaml components flows "$app/"
  install "$venv" --no-deps "$app"
  "$venv/bin/pip" check >/dev/null
  (cd "$app" && quiet "$venv/bin/detector" --help && quiet "$venv/bin/detector" train --help)
  (cd "$app" && quiet "$venv/bin/python" -c "import flows.pipeline, flows.score, prefect_kubernetes")
  # Serving runs from this image: its web stack and batch scoring's drift library must be locked here too.
  (cd "$app" && quiet "$venv/bin/python" -c "import components.serving.service, components.serving.mlflow_model, multipart; from components.serving import score; score._allow_evidently_import(); import evidently.metrics")
  (cd "$app" && quiet "$venv/bin/detector" serve --help)
  "$venv/bin/python" tests/infra/render_k8s_job.py infra/kubernetes/base-job-template.json >"$SCRATCH/training-job.json"
  .venv/bin/kubernetes-validate --quiet --strict "$SCRATCH/training-job.json"
}

check_mlflow() {
  local venv=$SCRATCH/mlflow
  "$VENV_PYTHON" -m venv "$venv"
  install "$venv" -r docker/requirements-mlflow.txt
  "$venv/bin/pip" check >/dev/null
  quiet "$venv/bin/python" -c "import mlflow.server.auth, psycopg2, boto3"
  PATH=$venv/bin:$PATH "$venv/bin/python" tests/infra/smoke_mlflow.py
}

check_gpu() { # each GPU lock resolves as a whole, for Python 3.11, without downloading the wheels
  local venv=$SCRATCH/gpu
  "$VENV_PYTHON" -m venv --without-pip "$venv"
  install "$venv" --dry-run -r docker/requirements-gpu.txt
  install "$venv" --dry-run -r docker/requirements-cpu.txt -r docker/requirements-gpu-jax.txt
}

[ $# -gt 0 ] || set -- cpu mlflow gpu
for image in "$@"; do
  case $image in
    cpu) timed "cpu image requirements: install, pip check, detector CLI, Kubernetes training job" check_cpu ;;
    mlflow) timed "mlflow image requirements: install, pip check, entrypoint with basic auth" check_mlflow ;;
    gpu) timed "gpu images (TensorFlow and JAX) requirements: resolve (dry run)" check_gpu ;;
    *)
      echo "usage: $0 [cpu] [mlflow] [gpu]" >&2
      exit 2
      ;;
  esac
done
