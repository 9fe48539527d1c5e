#!/usr/bin/env bash
# `make gpu-carry`: what bench/gpu_check.sh needs on a GPU host without a package index, in
# bench/carry/ (git-ignored): wheels for Python 3.12 on Linux x86_64 (the GPU hosts' Python,
# which already has jax, numpy, Pillow, protobuf, h5py, rich, absl-py and ml-dtypes), and the
# shards bench/gpu_carry.py writes. Versions are the ones this project's venv runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CARRY=bench/carry
mkdir -p "$CARRY/wheels"
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
WHEELS=(
  "keras==$(version keras)" "namex==$(version namex)" "optree==$(version optree)"
  "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic_core)" "annotated-types==$(version annotated-types)"
  "typing-inspection==$(version typing-inspection)" "google-crc32c==1.9.0"
)
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$CARRY/wheels" "${WHEELS[@]}"
PYTHONPATH=$PWD "$PY" -m bench.gpu_carry --out "$CARRY" "$@"
du -sh "$CARRY" "$CARRY/wheels"
