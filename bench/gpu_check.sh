#!/usr/bin/env bash
# One GPU, a few minutes: training images/s at 224 px (fp32 against mixed precision, with and
# without XLA) and the input pipeline's rate on this machine's CPUs, from synthetic shards.
# Self-contained: makes .venv if missing and, when the machine has an NVIDIA GPU that TensorFlow
# cannot see yet, installs the `gpu` extra (CUDA wheels, several GB). Without a GPU it installs
# nothing and runs on the CPU.
# Extra arguments go to `python -m bench.gpu_check` (e.g. --steps 30).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
sees_gpu() { .venv/bin/python -c "import sys, tensorflow as tf; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)" 2>/dev/null; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
[ -x .venv/bin/detector ] || .venv/bin/pip install --quiet --disable-pip-version-check -e .
if ! sees_gpu; then
    if nvidia-smi -L >/dev/null 2>&1; then
        .venv/bin/pip install --quiet --disable-pip-version-check -e '.[gpu]'
        sees_gpu || echo "WARNING: TensorFlow still sees no GPU (driver? CUDA_VISIBLE_DEVICES?); continuing on CPU" >&2
    else
        echo "WARNING: no NVIDIA GPU on this machine; the figures below are CPU figures" >&2
    fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec .venv/bin/python -m bench.gpu_check "$@"
