# syntax=docker/dockerfile:1.7
# etl-assets: one image for every role of the stack (see docker-compose.yml): the Dagster code server
# (`dagster api grpc`), dagster-webserver, dagster-daemon, run workers launched by the DockerRunLauncher,
# `etl-assets serve` and the demo API. Default command: `etl-assets serve` (health and metrics on 8080).

# --- builder: every dependency as a wheel, so the runtime needs no compiler, no network and no cache ---
FROM python:3.11-slim AS builder
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY etl_assets ./etl_assets
# dagster-docker (the DockerRunLauncher of deploy/docker/dagster.yaml) belongs to the image, not to the
# project's dependencies; it is pinned to the same Dagster release train as pyproject.toml.
RUN pip wheel --wheel-dir /wheels ".[celery]" "dagster-docker==0.29.27"

# --- runtime: the interpreter, the wheels installed, the sample data and curl for health checks ---
FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="etl-assets" \
      org.opencontainers.image.description="CSV, API and RSS sources as Dagster assets landing in a warehouse" \
      org.opencontainers.image.licenses="MIT"

# Versions come with the base image's Debian release; pinning an exact curl version breaks the build as soon
# as a security update replaces it in the archive.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    ETL_SOURCES=/opt/etl-assets/sources.yaml

# Installed from the builder's wheels only (--no-index): the runtime layer never reaches a package index.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl

WORKDIR /opt/etl-assets
COPY sources.yaml ./
COPY examples ./examples
COPY deploy/docker/dagster.yaml deploy/docker/workspace.yaml /opt/dagster/home/
# The demo API reads examples/ beside the installed package (etl_assets/demo_api.py: EXAMPLES), which a
# wheel install puts in site-packages: point that path at the copy above.
RUN ln -s /opt/etl-assets/examples "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/examples" \
    && groupadd --system --gid 10001 etl \
    && useradd --system --uid 10001 --gid etl --home-dir /opt/dagster --shell /usr/sbin/nologin etl \
    && mkdir -p /opt/dagster/home/storage /opt/dagster/home/logs \
    && chown -R etl:etl /opt/dagster

# Numeric, so Kubernetes runAsNonRoot can verify it without the image's /etc/passwd.
USER 10001:10001
EXPOSE 8080 3000 4000 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health"]
CMD ["etl-assets", "serve", "--host", "0.0.0.0", "--port", "8080"]
