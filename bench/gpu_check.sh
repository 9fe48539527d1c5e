#!/usr/bin/env bash
# One GPU, one call, under 6 minutes: bench/gpu_check.py's figures (a)-(d) on Keras with JAX.
# Made for a GPU host that has JAX (CUDA), Pillow, NumPy and protobuf but no TensorFlow and no
# package index: it installs the few wheels the TensorFlow-free path still needs (Keras and its
# small dependencies, pydantic, google-crc32c) from bench/carry/wheels, and reads the shards in
# bench/carry. Prepare both here first with `make gpu-carry` (git-ignored, about 35 MiB), and
# carry bench/carry with the checkout. Extra arguments go to `python -m bench.gpu_check`.
# With two or more GPUs it then trains (b) as two processes on this host, each with half the
# GPUs and joined as Kubeflow's jax-distributed runtime joins pods (docs/gpu.md); each process
# writes bench/gpu_results_process{0,1}.json. GPU_CHECK_PROCESSES=0 skips that case.
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
"$PYTHON" -m bench.gpu_check "$@"

GPUS=$(nvidia-smi --list-gpus 2>/dev/null | wc -l || true)
if [ "${GPU_CHECK_PROCESSES:-2}" = 2 ] && [ "$GPUS" -ge 2 ]; then
  HALF=$((GPUS / 2))
  FIRST=$(seq -s, 0 $((HALF - 1)))
  SECOND=$(seq -s, "$HALF" $((2 * HALF - 1)))
  PORT=$("$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  export JAX_COORDINATOR_ADDRESS=127.0.0.1:$PORT JAX_NUM_PROCESSES=2
  echo "two processes, GPUs $FIRST and $SECOND: (b) across both"
  JAX_PROCESS_ID=1 CUDA_VISIBLE_DEVICES=$SECOND "$PYTHON" -m bench.gpu_check --sections b --out bench/gpu_results_process1.json >bench/gpu_check_process1.log 2>&1 &
  OTHER=$!
  trap 'kill "$OTHER" 2>/dev/null || true' EXIT  # process 0 failing must not leave process 1 holding GPUs
  JAX_PROCESS_ID=0 CUDA_VISIBLE_DEVICES=$FIRST "$PYTHON" -m bench.gpu_check --sections b --out bench/gpu_results_process0.json
  wait "$OTHER" || { echo "process 1 failed:" >&2; tail -n 40 bench/gpu_check_process1.log >&2; exit 1; }
fi
