# cnntune worker image. One container = one worker = one GPU; all workers of a study share one database storage
# (PostgreSQL) and the study's artifacts (model files and per-epoch checkpoints, so a preempted trial resumes): a
# bucket (--artifacts s3://..., gs://..., az://..., stored with the study) or a volume mounted on every worker.
#
# GPU image (default: TensorFlow's CUDA image; its TensorFlow is used as it is):
#   docker build -t cnntune .
#   docker run --rm --gpus '"device=0"' -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY cnntune \
#       worker --study c25 --storage postgresql://user@db/cnntune
# CPU image (any Debian/Ubuntu base; TensorFlow for CPU comes from the `cpu` extra):
#   docker build --build-arg BASE=debian:bookworm-slim --build-arg EXTRAS=cpu,postgres,cloud -t cnntune:cpu .
#
# BASE: the image to build on; it needs apt, or python3 with the venv module already there.
# EXTRAS: the pyproject.toml extras installed with cnntune (`postgres` and `cloud`, the object-storage clients,
#   always; `cpu` or `tensorflow` where the base has no TensorFlow of its own).
ARG BASE=tensorflow/tensorflow:2.18.0-gpu
FROM ${BASE}

ARG EXTRAS=postgres,cloud
ARG CNNTUNE_UID=10001
# A pip configuration file mounted into the build (a package index mirror, a CA bundle); never part of the image.
ARG PIP_CONFIG_FILE

LABEL org.opencontainers.image.title="cnntune" \
      org.opencontainers.image.description="Automated search for Keras CNNs: a cnntune worker (Optuna, Keras Tuner)" \
      org.opencontainers.image.licenses="MIT"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/cnntune/bin:${PATH}

# Python with venv from the distribution when the base lacks it (a plain Debian base has no Python at all; a base
# with its own Python may lack only the venv module). Versions are not pinned: they are whatever the base's release
# ships, and the base is a build argument.
# hadolint ignore=DL3008,SC2086
RUN set -eu; \
    if ! command -v python3 >/dev/null; then pkgs="python3 python3-venv"; \
    elif ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        pkgs="python$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"; \
    else pkgs=""; fi; \
    if [ -n "$pkgs" ]; then \
        apt-get update; \
        apt-get install -y --no-install-recommends $pkgs; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv --system-site-packages /opt/cnntune; \
    groupadd --gid "${CNNTUNE_UID}" cnntune; \
    useradd --uid "${CNNTUNE_UID}" --gid "${CNNTUNE_UID}" --create-home --shell /bin/bash cnntune; \
    mkdir -p /data /artifacts; \
    chown cnntune:cnntune /data /artifacts

# Dependencies in one layer that depends on pyproject.toml only, so that a change to the code rebuilds in seconds.
# --system-site-packages above lets a base's own TensorFlow (the GPU image's) satisfy the requirements.
COPY pyproject.toml /tmp/cnntune/pyproject.toml
RUN python3 -c 'import sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb"))["project"]; \
extras = [e for e in sys.argv[2].split(",") if e]; \
print("\n".join(p["dependencies"] + [r for e in extras for r in p["optional-dependencies"][e]]))' \
        /tmp/cnntune/pyproject.toml "${EXTRAS}" > /tmp/cnntune/requirements.txt \
    && /opt/cnntune/bin/pip install --no-cache-dir -r /tmp/cnntune/requirements.txt \
    && rm -rf /tmp/cnntune

COPY pyproject.toml README.md /opt/cnntune/src/
COPY tuner /opt/cnntune/src/tuner
COPY search_spaces /opt/cnntune/src/search_spaces
RUN /opt/cnntune/bin/pip install --no-cache-dir --no-deps /opt/cnntune/src \
    && rm -rf /opt/cnntune/src \
    && cnntune --help >/dev/null

# /data: datasets, mounted (read-only is fine). /artifacts: the working directory, where this worker's own files go
# (the feature cache, Keras Tuner's project, and the model files and checkpoints of a study without a bucket, under
# cnntune_artifacts/): mount a volume there for `--artifacts /artifacts` instead of a bucket. No VOLUME instruction:
# it would give every container an anonymous volume, and a worker of a study in a bucket needs none.
WORKDIR /artifacts
USER ${CNNTUNE_UID}:${CNNTUNE_UID}

ENTRYPOINT ["cnntune"]
CMD ["--help"]
