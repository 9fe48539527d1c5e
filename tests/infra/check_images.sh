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
#   gpu:    resolution only (`pip install --dry-run`): its CUDA wheels are gigabytes. Its lock is
#           the CPU lock plus nvidia-* wheels (tests/infra/test_docker.py), so the CPU install
#           and imports stand in for it. The index serves no separate metadata here, so even a
#           dry run downloads the wheels (about 2 minutes); a lock that already resolved on
#           this machine is not resolved again unless CHECK_GPU_RESOLUTION=always.
# Wheels are kept in $DETECTOR_WHEELHOUSE (default ~/.cache/detector/wheelhouse): the index's
# responses are not cacheable here, so pip's own cache does not help. The first run downloads
# about 0.8 GB; later runs install offline from that folder. --no-compile: byte-compiling
# thousands of modules is most of an install's time and checks nothing the imports do not.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV_PYTHON=${VENV_PYTHON:-.venv/bin/python} # Python 3.11, as in the images
CACHE=${DETECTOR_CACHE:-$HOME/.cache/detector}
WHEELHOUSE=${DETECTOR_WHEELHOUSE:-$CACHE/wheelhouse}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$WHEELHOUSE"
export PIP_DISABLE_PIP_VERSION_CHECK=1

pip_quiet() { # pip, minus this machine's notes about missing local index folders
  "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

install_offline() { # venv, pip install arguments: from the wheelhouse; on a miss, fill it and retry
  local venv=$1
  shift
  if ! "$venv/bin/pip" install --quiet --no-compile --no-index --find-links "$WHEELHOUSE" "$@" 2>/dev/null; then
    echo "  downloading missing wheels into $WHEELHOUSE"
    pip_quiet "$venv/bin/pip" download --quiet --dest "$WHEELHOUSE" "$@"
    "$venv/bin/pip" install --quiet --no-compile --no-index --find-links "$WHEELHOUSE" "$@"
  fi
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
  install_offline "$venv" -r docker/requirements-cpu.txt
  # The files the Dockerfile copies, built outside the checkout; the build backend
  # (pyproject's setuptools>=69) comes from the wheelhouse too.
  mkdir -p "$app"
  cp -r pyproject.toml README.md mlflow.env prefect.yaml components flows "$app/"
  install_offline "$venv" "setuptools>=69" # the build backend, so the next step builds offline
  "$venv/bin/pip" install --quiet --no-compile --no-deps --no-index --find-links "$WHEELHOUSE" "$app"
  "$venv/bin/pip" check >/dev/null
  (cd "$app" && quiet "$venv/bin/detector" --help && quiet "$venv/bin/detector" train --help)
  (cd "$app" && quiet "$venv/bin/python" -c "import flows.pipeline, prefect_kubernetes")
  "$venv/bin/python" tests/infra/render_k8s_job.py infra/kubernetes/base-job-template.json >"$SCRATCH/training-job.json"
  .venv/bin/kubernetes-validate --quiet --strict "$SCRATCH/training-job.json"
}

check_mlflow() {
  local venv=$SCRATCH/mlflow
  "$VENV_PYTHON" -m venv "$venv"
  install_offline "$venv" -r docker/requirements-mlflow.txt
  "$venv/bin/pip" check >/dev/null
  quiet "$venv/bin/python" -c "import mlflow.server.auth, psycopg2, boto3"
  PATH=$venv/bin:$PATH "$venv/bin/python" tests/infra/smoke_mlflow.py
}

check_gpu() {
  local stamp
  stamp=$CACHE/gpu-resolved-$(sha256sum docker/requirements-gpu.txt | cut -c1-16)
  if [ -e "$stamp" ] && [ "${CHECK_GPU_RESOLUTION:-}" != always ]; then
    echo "  docker/requirements-gpu.txt unchanged since it last resolved here; CHECK_GPU_RESOLUTION=always resolves again"
    return
  fi
  pip_quiet "$VENV_PYTHON" -m pip install --quiet --dry-run --ignore-installed -r docker/requirements-gpu.txt
  touch "$stamp"
}

[ $# -gt 0 ] || set -- cpu mlflow gpu
for image in "$@"; do
  case $image in
    cpu) timed "cpu image requirements: install, pip check, detector CLI, Kubernetes training job" check_cpu ;;
    mlflow) timed "mlflow image requirements: install, pip check, entrypoint with basic auth" check_mlflow ;;
    gpu) timed "gpu image requirements: resolve (dry run)" check_gpu ;;
    *)
      echo "usage: $0 [cpu] [mlflow] [gpu]" >&2
      exit 2
      ;;
  esac
done
