# The CPU image: MLflow server, Prefect `cpu` worker, and every CPU stage (train, evaluate, export,
# ONNX Runtime / OpenVINO profiling, INT8 quantization). Build from the repository root:
#   docker build -f infra/docker/cpu.Dockerfile -t detops-cpu .
# The stack is the one pyproject.toml pins (installed from it, never restated here); only torch,
# which must come from PyTorch's CPU wheel index, is pinned here, to the Makefile's TORCH_VERSION.
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 DETOPS_HOME=/var/lib/detops

RUN apt-get update \
    && apt-get install -y --no-install-recommends git libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/detops
RUN pip install torch==${TORCH_VERSION} --index-url https://download.pytorch.org/whl/cpu \
    && pip install uv

COPY pyproject.toml README.md ./
COPY detops ./detops
COPY models ./models
COPY tasks ./tasks
COPY flows ./flows
COPY infra/mlflow ./infra/mlflow
RUN uv pip install --system ".[server]"

RUN useradd --create-home --uid 1000 detops && mkdir -p /var/lib/detops && chown detops /var/lib/detops
USER detops
CMD ["detops", "--help"]
