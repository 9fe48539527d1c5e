# CPU image for the data stages (validate, shard, evaluate, register) and CPU-only training.
# Build from the repository root:  docker build -f docker/cpu.Dockerfile -t detector-cpu .
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 detector
WORKDIR /app

COPY pyproject.toml README.md mlflow.env prefect.yaml ./
COPY components ./components
COPY flows ./flows
RUN pip install . && python -c "import components.cli, flows.pipeline"

USER detector
# Each stage is `detector <stage> --config FILE`; the printed JSON is the stage's result.
ENTRYPOINT ["detector"]
CMD ["--help"]
