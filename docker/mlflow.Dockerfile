# MLflow tracking server and model registry: PostgreSQL backend, artifacts proxied to S3
# (MinIO or any S3 endpoint), basic auth. Build from the repository root:
#   docker build -f docker/mlflow.Dockerfile -t detector-mlflow:3.17.2 .
# Settings come from the environment (see mlflow-entrypoint.sh and infra/stack.env.example).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 mlflow
WORKDIR /home/mlflow

COPY docker/requirements-mlflow.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt && rm /tmp/requirements.txt && pip check
COPY docker/mlflow-entrypoint.sh /usr/local/bin/mlflow-entrypoint
COPY docker/mlflow-users.py /usr/local/bin/mlflow-users.py

USER 10001
EXPOSE 5000
# /health answers without credentials even with basic auth on; the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["mlflow-entrypoint"]
CMD ["--host", "0.0.0.0", "--port", "5000"]
