# whisper-serve, GPU image: `serve run config.yaml` as a non-root user.
#   docker build -t whisper-serve .
#   docker run --gpus all -p 8000:8000 -v whisper-models:/home/whisper/.cache/whisper-serve whisper-serve
# CTranslate2 (faster-whisper) loads the CUDA 12 runtime and cuDNN 9 that this base image has;
# torch (pyannote) brings its own CUDA libraries with its wheel. Not built in this repository's CI.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0 PYANNOTE_METRICS_ENABLED=false
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1001 whisper

USER whisper
WORKDIR /home/whisper/app
COPY --chown=whisper pyproject.toml constraints.txt README.md ./
COPY --chown=whisper serve_app serve_app
COPY --chown=whisper deployments deployments
COPY --chown=whisper config.yaml config.cpu.yaml ./
RUN python3 -m venv /home/whisper/venv \
    && /home/whisper/venv/bin/pip install --no-cache-dir --constraint constraints.txt .
ENV PATH=/home/whisper/venv/bin:$PATH

EXPOSE 8000
CMD ["serve", "run", "config.yaml"]
