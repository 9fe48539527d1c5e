# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install the project on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Kubeflow Pipelines SDK in its own virtualenv: kfp requires protobuf<7 and pins requests,
# below what .venv and the images are locked with (kfp_pipeline/requirements.txt).
KFP_VENV := .venv-kfp
KFP_STAMP := $(KFP_VENV)/.installed

.PHONY: install demo test test-fast coverage check-images lint check-infra clean services services-stop bench kfp-env quality ui-check gpu-carry

# uv installs what pip would (same resolution, checked against `pip freeze`) in under a minute
# where pip took 7-15 on this 2-core machine: most of a fresh CI run was pip. Unlike pip, uv does
# not compile bytecode unless asked; where PYTHONDONTWRITEBYTECODE is set (as here) nothing ever
# would, and every process the tests, flows and stages start would compile TensorFlow, MLflow and
# Prefect from source again: 19 s instead of 6 s to import them.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev,infra,jax,ray]'
	$(BIN)/python -c "import tensorflow, jax, ray, mlflow, prefect, components"
	touch $(STAMP)

install: $(STAMP)

$(KFP_STAMP): kfp_pipeline/requirements.txt $(STAMP)
	$(PYTHON) -m venv $(KFP_VENV)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(KFP_VENV)/bin/python -r kfp_pipeline/requirements.txt
	$(KFP_VENV)/bin/python -c "import kfp.kubernetes, kfp.local"
	touch $(KFP_STAMP)

kfp-env: $(KFP_STAMP)

demo: $(STAMP)
	$(BIN)/detector demo

# The suite runs on TensorFlow (the default backend); its JAX checks start their own processes
# (tests/model/test_backends.py, test_distribution.py); the layer and precise-BN tests also run in-process on JAX.
# In parallel (pytest-xdist): 3 workers on 2 cores, as much of the suite waits on subprocesses and
# servers. The costliest shared fixtures are built once per run across workers (tests/conftest.py).
PYTEST_PARALLEL ?= -n 3 --durations=15
test: $(STAMP) $(KFP_STAMP)
	$(BIN)/pytest $(PYTEST_PARALLEL)
	KERAS_BACKEND=jax $(BIN)/pytest -q tests/model/test_augment_layer.py tests/model/test_precise_bn.py
	KERAS_BACKEND=jax $(BIN)/pytest -q tests/model/test_model.py -k npr

# The same suite under coverage.py, following the CLI, flow and stage subprocesses (pyproject);
# the HTML report lands in htmlcov/.
coverage: $(STAMP) $(KFP_STAMP)
	$(BIN)/pytest $(PYTEST_PARALLEL) --cov --cov-report=term:skip-covered --cov-report=html

test-fast: $(STAMP) $(KFP_STAMP)
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "code or data"

# The MLflow UI and the `detector serve` page as a user sees them: a fresh tiny demo-like store,
# `mlflow server` on loopback and headless Chromium (Debian's package: apt-get install chromium);
# screenshots in work/ui-check/.
ui-check: $(STAMP)
	$(BIN)/python -m tests.ui.ui_check --out work/ui-check

# Every benchmark figure in one run: prints a table, writes bench/results.json (bench/README.md).
bench: $(STAMP)
	$(BIN)/python -m bench

# Detection quality on real images (docs/quality.md): trains on
# QUALITY_DATA, prints the comparison, robustness and calibration tables.
QUALITY_DATA ?= ../shared/data/cifake-dev
QUALITY_ARGS ?=
quality: $(STAMP)
	$(BIN)/python -m flows.quality --data $(QUALITY_DATA) $(QUALITY_ARGS)

# Wheels and shards for bench/gpu_check.sh on a GPU host without TensorFlow or a package index.
gpu-carry: $(STAMP)
	bench/prepare_gpu_carry.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Images, compose and Kubernetes without a docker engine or cluster: the infra tests (hadolint,
# Compose's own loader, Kubernetes schemas, the work-pool template through Prefect's
# templating), then each image's requirement set installed and run (see the script's header).
check-infra: $(STAMP)
	$(BIN)/pytest tests/infra -q
	bash tests/infra/check_images.sh

# Only the image installs and entrypoints (make test already runs tests/infra): what CI adds.
check-images: $(STAMP)
	bash tests/infra/check_images.sh

services: $(STAMP)
	infra/local/services.sh start

services-stop:
	infra/local/services.sh stop

clean:
	rm -rf work mlflow.db mlruns mlartifacts
