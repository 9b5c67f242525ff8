# syntax=docker/dockerfile:1
#
# Pointsman container image: the `pointsman` console script in a virtualenv on
# python:3.11-slim, run as an unprivileged user. See docs/deployment.md.
#
#   docker build -t pointsman:local .
#   docker run --rm -p 127.0.0.1:50051:50051 pointsman:local
#
# Both stages use the same base so the compiled wheels (grpcio, asyncpg,
# pydantic-core, ...) in the venv match the interpreter they run on. For a
# reproducible build, pin it by digest:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim

# --------------------------------------------------------------------------
# Builder: resolve dependencies and build/install the project into /opt/venv.
# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# 1. Dependencies only. This layer is rebuilt when pyproject.toml or the pins
#    change, not when the source does: the server's requirements are read out of
#    [project].dependencies and the `server` extra (tomllib is in the 3.11
#    standard library) and installed at the versions CI tested (constraints.txt,
#    refreshed by scripts/lock).
COPY pyproject.toml README.md constraints.txt ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; deps = p['dependencies'] + p['optional-dependencies']['server']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install -c constraints.txt -r /tmp/requirements.txt

# 2. The project itself. hatchling assembles one `pointsman` package from the
#    three source roots (see [tool.hatch.build.targets.wheel] in pyproject.toml)
#    and needs README.md for the metadata. --no-deps: they are installed above.
COPY gen/ ./gen/
COPY server/ ./server/
COPY clients/ ./clients/
RUN pip install --no-deps . \
 && pip check \
 && pointsman --help > /dev/null

# --------------------------------------------------------------------------
# Runtime: the venv, a non-root user, nothing else.
# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="pointsman" \
      org.opencontainers.image.description="Protocol-first gRPC gateway for large language models" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    POINTSMAN_ADDRESS=0.0.0.0:50051 \
    POINTSMAN_DATA_DIR=/var/lib/pointsman

# Fixed uid/gid 10001 so volume ownership is predictable across hosts. The data
# directory is created and owned here so that a fresh named volume mounted on
# it inherits that ownership.
RUN groupadd --system --gid 10001 pointsman \
 && useradd --system --uid 10001 --gid 10001 \
        --home-dir /var/lib/pointsman --no-create-home \
        --shell /usr/sbin/nologin pointsman \
 && mkdir -p /var/lib/pointsman \
 && chown 10001:10001 /var/lib/pointsman

COPY --from=builder /opt/venv /opt/venv

WORKDIR /var/lib/pointsman
VOLUME ["/var/lib/pointsman"]
USER 10001:10001

EXPOSE 50051
# Prometheus metrics, when POINTSMAN_METRICS_ADDRESS is set (the compose file uses 0.0.0.0:9464).
EXPOSE 9464

# `pointsman health` exits 0 only when the gRPC health service reports SERVING.
# It probes the port of the default POINTSMAN_ADDRESS: change both together.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["pointsman", "health", "--address", "127.0.0.1:50051"]

# On SIGTERM the server flips health to NOT_SERVING and drains open streams for
# POINTSMAN_SHUTDOWN_GRACE_SECONDS (default 10) before it stops. The process is
# PID 1 and installs its own handler, so no init wrapper is needed. Give the
# container more than that grace to stop (docker stop -t 15, compose
# stop_grace_period: 15s).
STOPSIGNAL SIGTERM

ENTRYPOINT ["pointsman"]
CMD ["serve"]
