# GPU image, JAX variant: the training stage on NVIDIA GPUs with Keras on JAX (KERAS_BACKEND=jax).
# JAX's `cuda13` extra brings CUDA and cuDNN as pinned pip wheels, so, like docker/gpu.Dockerfile,
# the host needs only the NVIDIA driver and container toolkit. Several GPUs in one container
# train with keras.distribution.DataParallel. Shards are read by tf.data where TensorFlow (CPU)
# is present, as here, or by the TensorFlow-free reader. Use it in place of detector-gpu: the
# `gpu` deployment's `image` job variable (docs/gpu.md). Build from
# the repository root:
#   docker build -f docker/gpu-jax.Dockerfile -t detector-gpu-jax:0.1.0 .
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=jax \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN useradd --create-home --uid 10001 detector
WORKDIR /app

COPY docker/requirements-cpu.txt /tmp/requirements-cpu.txt
COPY docker/requirements-gpu-jax.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements-cpu.txt --requirement /tmp/requirements.txt && rm /tmp/requirements*.txt

COPY pyproject.toml README.md mlflow.env prefect.yaml ./
COPY components ./components
COPY flows ./flows
RUN pip install --no-deps . && pip check && python -c "import jax, keras, components.cli, flows.pipeline; assert keras.backend.backend() == 'jax'" \
    && install --directory --owner detector /app/work

# Numeric, so Kubernetes can enforce runAsNonRoot without resolving a name.
USER 10001
ENTRYPOINT ["detector"]
CMD ["--help"]
