# syntax=docker/dockerfile:1
#
# hubble-otlp images.
#   bridge  (default target): the bridge and its tools, non-root, on the official slim Python image
#     docker build -t hubble-otlp:dev .
#   sidecar: the BCC sidecar on Debian with python3-bpfcc; root, because it loads BPF programs
#     docker build --target sidecar -t hubble-otlp-sidecar:dev .
#
# Versions are pinned: base images by dated tag, Debian packages by version, Python packages by the lock
# files with their hashes (requirements.txt, requirements-build.txt: scripts/lock.sh, the versions the test
# suite runs with). Nothing is resolved inside a build: every pip install is --no-deps.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
# The same Python on the full image, which has a C compiler: the build compiles the hot path (setup.py)
ARG PYTHON_BUILD_IMAGE=python:3.11.11-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-20250317-slim

# ---- bridge: build a virtualenv, then copy only it into a clean image -----------------------
FROM ${PYTHON_BUILD_IMAGE} AS bridge-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The build backend (setuptools, Cython) lives in its own virtualenv: the image keeps only what runs.
COPY requirements.txt requirements-build.txt ./
RUN python -m venv /opt/build && python -m venv /opt/hubble-otlp \
    && /opt/build/bin/pip install --require-hashes --no-deps -r requirements-build.txt \
    && /opt/hubble-otlp/bin/pip install --require-hashes --no-deps -r requirements.txt
COPY pyproject.toml README.md setup.py ./
COPY hubble_bridge ./hubble_bridge
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation -w /wheels . \
    && /opt/hubble-otlp/bin/pip install --no-deps /wheels/*.whl

# ---- sidecar: Debian's python3 so that Debian's bcc module (python3-bpfcc) imports -----------
FROM ${DEBIAN_IMAGE} AS sidecar-build
ARG PYTHON3_VERSION=3.11.2-1+b1
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=${PYTHON3_VERSION} python3-venv=${PYTHON3_VERSION} \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# --system-site-packages: bcc comes from Debian's package, not from PyPI.
RUN python3 -m venv --system-site-packages /opt/hubble-otlp && python3 -m venv /opt/build
COPY requirements.txt requirements-build.txt ./
RUN /opt/build/bin/pip install --require-hashes --no-deps -r requirements-build.txt \
    && /opt/hubble-otlp/bin/pip install --require-hashes --no-deps -r requirements.txt
# No C compiler here: the hot path stays pure Python (the sidecar does not run the mapping).
COPY pyproject.toml README.md setup.py ./
COPY hubble_bridge ./hubble_bridge
RUN HUBBLE_OTLP_PURE=1 /opt/build/bin/pip wheel --no-deps --no-build-isolation -w /wheels . \
    && /opt/hubble-otlp/bin/pip install --no-deps /wheels/*.whl

FROM ${DEBIAN_IMAGE} AS sidecar
ARG PYTHON3_VERSION=3.11.2-1+b1
ARG BCC_VERSION=0.26.0+ds-1
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3=${PYTHON3_VERSION} python3-bpfcc=${BCC_VERSION} \
    && rm -rf /var/lib/apt/lists/*
COPY --from=sidecar-build /opt/hubble-otlp /opt/hubble-otlp
ENV PATH=/opt/hubble-otlp/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp
# Root on purpose: the pod grants only CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_RESOURCE.
USER 0:0
ENTRYPOINT ["hubble-otlp"]
CMD ["sidecar", "--help"]

# ---- the default target -----------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS bridge
COPY --from=bridge-build /opt/hubble-otlp /opt/hubble-otlp
# A data directory the non-root user owns: a named volume mounted here inherits that ownership.
RUN mkdir -p /var/lib/hubble-otlp && chown 65532:65532 /var/lib/hubble-otlp
ENV PATH=/opt/hubble-otlp/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/hubble-otlp
USER 65532:65532
# Prometheus /metrics, /healthz and /readyz, the replay relay.
EXPOSE 9965 8080 4245
ENTRYPOINT ["hubble-otlp"]
CMD ["--help"]
