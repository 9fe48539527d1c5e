# CPU image: the data stages (validate, shard, evaluate, register), CPU training, and the Prefect
# side (server, process or Kubernetes worker, the jobs it starts). Build from the repository root:
#   docker build -f docker/cpu.Dockerfile -t detector-cpu:0.1.0 .
# Pinned to the Python patch release and Debian release the requirement lock was resolved for.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false

RUN useradd --create-home --uid 10001 detector
WORKDIR /app

# Requirements before the source, so a code change does not reinstall TensorFlow.
COPY docker/requirements-cpu.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt && rm /tmp/requirements.txt

COPY pyproject.toml README.md mlflow.env prefect.yaml ./
COPY components ./components
COPY flows ./flows
# --no-deps: everything is already pinned above; `pip check` fails the build if the lock and
# pyproject.toml disagree.
RUN pip install --no-deps . && pip check && python -c "import components.cli, flows.pipeline" \
    && install --directory --owner detector /app/work

# Numeric, so Kubernetes can enforce runAsNonRoot without resolving a name.
USER 10001
# Each stage is `detector <stage> --config FILE`; the printed JSON is the stage's result.
ENTRYPOINT ["detector"]
CMD ["--help"]
