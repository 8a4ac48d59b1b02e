# syntax=docker/dockerfile:1
# The cancelq image: `cancelq worker` (default), `cancelq confirmer`, `cancelq simulator`,
# `cancelq loadgen`, `cancelq health`. tests/deploy/test_deploy_image.py builds what this copies
# into a fresh virtualenv and runs each of those commands (and every one compose and k8s name).
#   docker build -t cancelq:local .

# --- build: compile wheels (some dependencies may lack wheels for the platform) --------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cancelq ./cancelq
COPY worker ./worker
COPY producers ./producers
COPY confirmer ./confirmer
COPY simulator ./simulator
RUN pip install ".[worker,confirmer,simulator]"

# --- runtime: the virtualenv only; no compiler, no sources, not root --------------------------
FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 cancelq \
    && useradd --system --uid 10001 --gid cancelq --home-dir /home/cancelq --create-home \
       --shell /usr/sbin/nologin cancelq
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CANCELQ_METRICS_PORT=9808 \
    CANCELQ_METRICS_HOST=0.0.0.0 \
    CANCELQ_LOG_FORMAT=json
WORKDIR /home/cancelq
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 9808
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["cancelq", "health"]
ENTRYPOINT ["cancelq"]
CMD ["worker"]
