#!/usr/bin/env bash
# One GPU, one call, under 6 minutes: bench/gpu_check.py's figures (a)-(d) on Keras with JAX.
# Made for a GPU host that has JAX (CUDA), Pillow, NumPy and protobuf but no TensorFlow and no
# package index: it installs the few wheels the TensorFlow-free path still needs (Keras and its
# small dependencies, pydantic, google-crc32c) from bench/carry/wheels, and reads the shards in
# bench/carry. Prepare both here first with `make gpu-carry` (git-ignored, about 35 MiB), and
# carry bench/carry with the checkout. Extra arguments go to `python -m bench.gpu_check`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-true}
[ -f bench/carry/photos/manifest.json ] || { echo "bench/carry is missing: run 'make gpu-carry' on the CPU host and carry it" >&2; exit 2; }
SITE=$(mktemp -d)
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" bench/carry/wheels/*.whl
export PYTHONPATH="$SITE:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "WARNING: no NVIDIA GPU; CPU figures" >&2
"$PYTHON" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
exec "$PYTHON" -m bench.gpu_check "$@"
