# syntax=docker/dockerfile:1.7
# One image per service, from one file: `docker build --target analyzer .` (orchestrator, analyzer, validator,
# client, local-llm). Dependencies come from uv.lock, the final images run as a non-root user and hold only their
# service and shared/. docker-compose.yml builds every target.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# --- the locked dependencies, without the project ---------------------------------------------------------
FROM ${PYTHON_IMAGE} AS deps
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never
WORKDIR /build
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project --no-editable

FROM deps AS deps-local
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project --no-editable --extra local

# --- what every final image shares ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# MALLOC_ARENA_MAX: glibc's memory arenas, at most two (client/devstack.py WORKER_DEFAULTS says why)
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH \
    TOLLGATE_HEALTH_FILE=/tmp/tollgate-healthy MALLOC_ARENA_MAX=2
RUN groupadd --system --gid 10001 tollgate \
    && useradd --system --uid 10001 --gid tollgate --home-dir /app --shell /usr/sbin/nologin tollgate
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
COPY shared/ shared/
COPY services/__init__.py services/__init__.py
# SIGTERM: the worker stops polling and gives in-flight activities TOLLGATE_SHUTDOWN_GRACE_SECONDS (30 s) to finish
# before they are cancelled and handed back to Temporal; the orchestrator's stop timeout is longer than that.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-m", "shared.health"]

FROM runtime AS orchestrator
COPY services/orchestrator/ services/orchestrator/
USER 10001:10001
CMD ["python", "-m", "services.orchestrator"]

FROM runtime AS analyzer
COPY services/analyzer/ services/analyzer/
USER 10001:10001
CMD ["python", "-m", "services.analyzer"]

FROM runtime AS validator
COPY services/validator/ services/validator/
USER 10001:10001
CMD ["python", "-m", "services.validator"]

# --- the client: `tollgate run/watch/review/result` from inside the stack's network -------------------------------
FROM runtime AS client
COPY client/ client/
COPY examples/ examples/
USER 10001:10001
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "client"]
CMD ["--help"]

# --- the embedded model server, only for the local-llm profile: llama.cpp and the Qwen2.5-Coder GGUF ------------
FROM ${PYTHON_IMAGE} AS local-llm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH \
    TOLLGATE_MODEL_CACHE_DIR=/models TOLLGATE_LOCAL_MODEL_HOST=0.0.0.0
RUN groupadd --system --gid 10001 tollgate \
    && useradd --system --uid 10001 --gid tollgate --home-dir /app --shell /usr/sbin/nologin tollgate \
    && mkdir /models && chown tollgate:tollgate /models
WORKDIR /app
COPY --from=deps-local /opt/venv /opt/venv
COPY shared/ shared/
COPY deploy/__init__.py deploy/model.py deploy/
USER 10001:10001
# join and hash-check the weights at build time, so a container starts serving at once
RUN python -m deploy.model --prepare-only
EXPOSE 8091
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8091/health', timeout=4)"]
CMD ["python", "-m", "deploy.model"]
