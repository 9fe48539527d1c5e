# GPU image: the training stage on NVIDIA GPUs. TensorFlow's `and-cuda` extra brings CUDA and
# cuDNN as pinned pip wheels, so the base is the same slim Python as the CPU image and the host
# needs only the NVIDIA driver and container toolkit. Several GPUs in one container train with
# tf.distribute.MirroredStrategy. No NVIDIA_VISIBLE_DEVICES here: `docker run --gpus` and the
# Kubernetes device plugin set it to the GPUs granted; a default of "all" would hand every GPU
# of the node to a container that asked for none. Build from the repository root:
#   docker build -f docker/gpu.Dockerfile -t detector-gpu:0.1.0 .
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN useradd --create-home --uid 10001 detector
WORKDIR /app

COPY docker/requirements-gpu.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt && rm /tmp/requirements.txt

COPY pyproject.toml README.md mlflow.env prefect.yaml ./
COPY components ./components
COPY flows ./flows
RUN pip install --no-deps . && pip check && python -c "import components.cli, flows.pipeline" \
    && install --directory --owner detector /app/work

# Numeric, so Kubernetes can enforce runAsNonRoot without resolving a name.
USER 10001
ENTRYPOINT ["detector"]
CMD ["--help"]
