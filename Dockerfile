# The operator image: `docker build -t ghcr.io/jibri-operator/jibri-operator:0.1.0 .`
#
# Stage 1 builds the jibri-operator wheel and the wheels of its runtime dependencies
# (no dev or sandbox extras). Stage 2 installs only those wheels into a slim Python
# and runs as a non-root user. No secret is baked in: the operator reads its XMPP
# logins and stream keys from Kubernetes Secrets at run time.
#
# The Python minor version matches CI (pyproject: requires-python, mypy, ruff);
# tests/unit/test_dockerfile.py checks it.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels jibri-operator
# A numeric uid/gid, so Kubernetes can check runAsNonRoot without a passwd lookup.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["jibri-operator", "run"]
