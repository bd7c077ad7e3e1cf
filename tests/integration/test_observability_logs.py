"""Structured logs: the JSON access line (fields, ids, no secrets), request ids on other lines,
the formatters, the CLI wiring; and the ``observability:`` config section."""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import sys

import httpx
import orjson
import pytest

from gateway.admin.public_config import public_config
from gateway.config import ConfigError, parse_config
from gateway.core.context import RequestContext
from gateway.observability.logs import CURRENT, JsonFormatter, TextFormatter, make_handler
from tests.support.gateway import gateway_config
from tests.support.telemetry import free_port, gateway_env, wait_for

CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}
TRACE = "0af7651916cd43dd8448eb211c80319c"
BACKEND_CANARY = "sk-backend-canary-7f3a9c1d2e"
CLIENT_CANARY = "sk-client-canary-0b8e4d6a5f"


@pytest.fixture
def captured():
    """Everything logged (root logger, INFO and up) as JSON lines, in a list."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines():
        handler.flush()
        return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    lines.text = lambda: stream.getvalue()
    yield lines
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_access_line_fields_and_no_secrets(make_gateway, upstream, captured):
    key_hash = hashlib.sha256(CLIENT_CANARY.encode()).hexdigest()
    srv = make_gateway(gateway_config(upstream.url, extra=f"""
telemetry: {{enabled: false}}
keys: [{{tenant: acme, id: team-a, sha256: {key_hash}}}]
observability:
  tracing: {{enabled: true, exporter: none}}
  logging: {{format: json, access_log: true}}
""").replace("sk-backend-secret", BACKEND_CANARY))
    upstream.json(CHAT)
    r = httpx.post(f"{srv.url}/v1/chat/completions",
                   json={"model": "gpt-test", "messages": [{"role": "user", "content": "my body text"}]},
                   headers={"Authorization": f"Bearer {CLIENT_CANARY}", "traceparent": f"00-{TRACE}-b7ad6b7169203331-01",
                            "x-request-id": "req-123"})
    assert r.status_code == 200
    # An upstream error that echoes the backend key, and a rejected key.
    upstream.json({"error": {"message": f"invalid key {BACKEND_CANARY}"}}, status=401)
    httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "gpt-test", "messages": []},
               headers={"Authorization": f"Bearer {CLIENT_CANARY}"})
    httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "gpt-test", "messages": []},
               headers={"Authorization": "Bearer sk-wrong-canary-key-123456"})
    access = wait_for(lambda: (lambda a: a if len(a) >= 3 else None)(
        [line for line in captured() if line["logger"] == "gateway.access"]), timeout=5, what="access lines")
    ok, upstream_401, rejected = access[:3]
    assert ok["client_request_id"] == "req-123" and r.headers["x-request-id"] == "req-123"
    assert len(ok["request_id"]) == 36 and ok["trace_id"] == TRACE and ok["level"] == "INFO"
    assert ok["status"] == 200 and ok["model"] == "gpt-test" and ok["backend"] == "fake"
    assert ok["model_served"] == "up-model" and ok["tenant"] == "acme" and ok["api_key_id"] == "team-a"
    assert ok["endpoint"] == "chat/completions" and ok["attempts"] == 1 and ok["stream"] is False
    assert ok["prompt_tokens"] == 11 and ok["completion_tokens"] == 3 and ok["latency_ms"] > 0
    assert ok["msg"].startswith("/v1/chat/completions 200 ")
    assert ok["ts"].endswith("Z")
    assert upstream_401["status"] == 401 and upstream_401["error_type"] == "upstream_http_error"
    assert rejected["status"] == 401 and rejected["error_type"] == "invalid_api_key"
    assert "tenant" not in rejected
    text = captured.text()
    for canary in (BACKEND_CANARY, CLIENT_CANARY, "sk-wrong-canary-key-123456", "my body text", "invalid key"):
        assert canary not in text


def test_access_log_off_by_default_and_follows_reloads(upstream, captured, tmp_path):
    from gateway.app import WATCHER, build_app
    from gateway.config import load_config
    from gateway.proxy.server import BackgroundServer

    path = tmp_path / "gateway.yaml"
    base = gateway_config(upstream.url, extra="telemetry: {enabled: false}\nserver: {reload_interval_s: 0.05}\n")
    path.write_text(base)
    app = build_app(load_config(path))
    with BackgroundServer(app) as srv:
        upstream.json(CHAT)
        httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "gpt-test", "messages": []})
        assert not [line for line in captured() if line["logger"] == "gateway.access"]
        path.write_text(base + "observability: {logging: {access_log: true}}\n")
        wait_for(lambda: app[WATCHER].reloads == 1, what="the reload")
        httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "gpt-test", "messages": []})
        assert len([line for line in captured() if line["logger"] == "gateway.access"]) == 1


def test_formatters_scrub_and_stamp_request_ids():
    stream = io.StringIO()
    handler = make_handler("json", stream)
    logger = logging.getLogger("test.observability.json")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    ctx = RequestContext(request_id="rid-1", endpoint="chat/completions", t_start=0.0, ts_start=0.0)
    ctx.trace_id = TRACE
    token = CURRENT.set(ctx)
    try:
        logger.warning("upstream said Bearer sk-abcdefghijklmnopqrstuvwx and api_key=hunter22")
        try:
            raise ValueError("key sk-zzzzzzzzzzzzzzzzzzzzzzzz leaked")
        except ValueError:
            logger.exception("failed")
    finally:
        CURRENT.reset(token)
    logger.info("outside a request")
    first, second, third = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "rid-1" and first["trace_id"] == TRACE and first["level"] == "WARNING"
    assert "sk-abcdefghijklmnopqrstuvwx" not in first["msg"] and "hunter22" not in first["msg"]
    assert "ValueError" in second["exc"] and "sk-zzzzzzzzzzzzzzzzzzzzzzzz" not in second["exc"]
    assert "request_id" not in third
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "/v1/x 200", (), None)
    record.fields = {"status": 200, "model": "m", "tenant": None}
    assert TextFormatter().format(record).endswith("/v1/x 200 status=200 model=m")
    assert orjson.loads(JsonFormatter().format(record))["model"] == "m"


def test_serve_writes_json_logs_from_the_config(tmp_path):
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text("backends:\n  mock: {type: mock}\nmodels:\n  mock-gpt: {targets: [{backend: mock}]}\n"
                      "telemetry: {enabled: false}\n"
                      "observability: {logging: {format: json, access_log: true}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gateway_env())
    url = f"http://127.0.0.1:{port}"
    try:
        def ready():
            try:
                return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(ready, timeout=60, what="the gateway")
        r = httpx.post(f"{url}/v1/chat/completions", json={"model": "mock-gpt",
                                                         "messages": [{"role": "user", "content": "hi"}]},
                       headers={"x-request-id": "cli-req-1"})
        assert r.status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "gateway.access"]
    assert len(access) == 1 and access[0]["client_request_id"] == "cli-req-1" and access[0]["status"] == 200
    assert all(not line.strip() or line.startswith("{") for line in err.splitlines()), err


# --- the config section --------------------------------------------------------------------------
def test_config_section_is_strict_and_masks_secrets():
    with pytest.raises(ConfigError) as info:
        parse_config("observability: {tracing: {enabeld: true}}\n")
    assert "observability.tracing.enabeld" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config("observability: {metrics: {allow_from: [not-a-net]}}\n")
    assert "observability.metrics.allow_from" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config("observability: {tracing: {endpoint: 'collector:4318'}}\n")
    assert "observability.tracing.endpoint" in str(info.value)
    cfg = parse_config("""
observability:
  tracing: {enabled: true, headers: {x-api-key: TRACE-SECRET}, sample_ratio: 0.25}
  metrics: {bearer_token: METRICS-SECRET}
  logging: {level: debug}
""").config
    o = cfg.observability
    assert o.tracing.sample_ratio == 0.25 and o.logging.level == "DEBUG" and o.metrics.enabled
    text = str(public_config(cfg))
    assert "TRACE-SECRET" not in text and "METRICS-SECRET" not in text
    defaults = parse_config("{}\n").config.observability
    assert not defaults.tracing.enabled and defaults.metrics.enabled and not defaults.logging.access_log
