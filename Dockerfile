# qc2c runtime image: a digest-pinned CUDA runtime, the locked dependency set (requirements.lock, the same
# lock `make setup` uses) and the project. `make image` builds it with BuildKit (RUN --mount) and tags it
# qc2c:<git short commit> and qc2c:latest; `make run CONTAINER=docker` runs manifests inside it.
#
# Build arguments:
#   BASE_IMAGE       any Debian/Ubuntu image; python3 + python3-venv are installed when it lacks them.
#                    The default is pinned by digest: NVIDIA deletes old CUDA tags, so a tag alone is not
#                    reproducible. Ubuntu 24.04 ships Python 3.12 (the project needs >= 3.11).
#   TORCH_INDEX_URL  where the torch wheel comes from (the CUDA build; the lock pins the version).
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX
#                    standard pip settings, unset unless given: a mirror, or an offline wheelhouse
#                    (the integration test builds with a local Debian base and PIP_NO_INDEX=1).
#   GIT_COMMIT, VERSION, SOURCE_URL   OCI labels; declared last so a new commit rebuilds only the top layers.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04@sha256:ac55d124da4882b497f732d8dfd9a702d5447a5f29d08d56da6f64f0a1eb34bc
FROM ${BASE_IMAGE}
ARG BASE_IMAGE

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Versions are not pinned here on purpose: the base digest fixes the distribution release, and apt pins
# break as soon as the archive publishes a security update.
# hadolint ignore=DL3008
RUN if ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --gid 10001 qc2c \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin qc2c \
    && mkdir -p /cache/huggingface /cache/qc2c \
    && chmod 1777 /cache /cache/huggingface /cache/qc2c

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/huggingface \
    QC2C_TINY_CACHE=/cache/qc2c/tiny \
    MPLCONFIGDIR=/tmp/matplotlib \
    QC2C_IN_CONTAINER=1
RUN python3 -m venv /opt/venv

WORKDIR /app

# ---- dependencies: change only when the lock changes ----
COPY requirements.lock ./
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
# torch first, alone and without dependencies, from the CUDA index (the lock names the CPU build's version
# without its local label; `==2.13.0` also matches `2.13.0+cu128`). The second call installs the whole
# lock plus torch's CUDA runtime wheels (nvidia-*), which the CPU lock cannot list.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps --index-url "${TORCH_INDEX_URL}" -c requirements.lock torch \
    && pip install -r requirements.lock

# ---- the project: changes with every commit ----
COPY pyproject.toml README.md ./
COPY qc2c ./qc2c
COPY runner ./runner
COPY remote ./remote
COPY manifests ./manifests
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && mkdir -p runs golden \
    && chown qc2c:qc2c runs golden

ARG GIT_COMMIT=unknown
ARG VERSION=0.1.0
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="qc2c" \
      org.opencontainers.image.description="Quantized Cache-to-Cache runner (python -m runner)" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
ENV QC2C_GIT_COMMIT=${GIT_COMMIT}

# numeric, so the host and `docker run --user` checks agree on who this is (qc2c, created above)
USER 10001:10001
ENTRYPOINT ["python", "-m", "runner"]
CMD ["run", "manifests/smoke.yaml"]
