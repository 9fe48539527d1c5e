# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install the project on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint check-infra clean services services-stop bench gpu-carry

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,infra,jax]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import tensorflow, jax, mlflow, prefect, components" 
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/detector demo

# The suite runs on TensorFlow (the default backend); its JAX checks start their own processes
# (tests/model/test_backends.py, test_distribution.py); the layer and precise-BN tests also run in-process on JAX.
test: $(STAMP)
	$(BIN)/pytest
	KERAS_BACKEND=jax $(BIN)/pytest -q tests/model/test_augment_layer.py tests/model/test_precise_bn.py

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

# Every benchmark figure in one run: prints a table, writes bench/results.json (bench/README.md).
bench: $(STAMP)
	$(BIN)/python -m bench

# Wheels and shards for bench/gpu_check.sh on a GPU host without TensorFlow or a package index.
gpu-carry: $(STAMP)
	bench/prepare_gpu_carry.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Images, compose and Kubernetes without a docker engine or cluster: the infra tests (hadolint,
# Compose's own loader, Kubernetes schemas, the work-pool template through Prefect's
# templating), then each image's requirement set installed and run (see the script's header).
check-infra: $(STAMP)
	$(BIN)/pytest tests/infra -q
	bash tests/infra/check_images.sh

services: $(STAMP)
	infra/local/services.sh start

services-stop:
	infra/local/services.sh stop

clean:
	rm -rf work mlflow.db mlruns mlartifacts
