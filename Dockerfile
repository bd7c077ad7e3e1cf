# llm-gateway containers: slim Python, non-root, `llm-gateway serve`, health-checked on /healthz.
# Two targets:
#   embedded (the default)  with the embedded ClickHouse (chDB): telemetry works with no server;
#                           its data lives in /data (mount a volume)
#                             docker build -t llm-gateway .
#   slim                    without chDB, numpy, pandas and pyarrow (~860 MB less installed), for
#                           a gateway that writes to a ClickHouse server (telemetry.clickhouse.dsn)
#                             docker build --target slim -t llm-gateway:slim .
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY loadtest ./loadtest
COPY config ./config
COPY plugins ./plugins
RUN useradd --create-home --uid 10001 gateway && mkdir -p /data && chown gateway /data

ENV LLM_GATEWAY_DATA_DIR=/data
EXPOSE 8080
# (directly, never through a proxy the container's environment may name)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request as u,sys; o=u.build_opener(u.ProxyHandler({})); sys.exit(0 if o.open('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
CMD ["llm-gateway", "serve", "--config", "/app/config/gateway.yaml", "--host", "0.0.0.0", "--port", "8080"]

# Installed as root (into the system site-packages), run as the unprivileged user.
FROM base AS slim
RUN pip install '.[otel]'
USER gateway

FROM base AS embedded
RUN pip install '.[otel,embedded]'
USER gateway
