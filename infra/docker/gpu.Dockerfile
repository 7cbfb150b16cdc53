# The GPU image for the `t4` work pool: TensorRT 10 engine builds, CUDA profiling, GPU training.
# NVIDIA's TensorRT container (TensorRT 10.x, CUDA 12) is the base; the `trt` extra pins the Python
# bindings to the same major release (tensorrt>=10,<11). Build from the repository root:
#   docker build -f infra/docker/gpu.Dockerfile -t detops-gpu .
ARG TRT_BASE=nvcr.io/nvidia/tensorrt:24.12-py3
FROM ${TRT_BASE}

ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 DETOPS_HOME=/var/lib/detops

RUN apt-get update \
    && apt-get install -y --no-install-recommends git libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/detops
# PyPI's torch wheel for Linux x86_64 is the CUDA build.
RUN pip install torch==${TORCH_VERSION} && pip install uv

COPY pyproject.toml README.md ./
COPY detops ./detops
COPY models ./models
COPY tasks ./tasks
COPY flows ./flows
RUN uv pip install --system ".[trt,server]"

RUN useradd --create-home --uid 1001 detops && mkdir -p /var/lib/detops && chown detops /var/lib/detops
USER detops
CMD ["detops", "--help"]
