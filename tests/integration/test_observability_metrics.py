"""``GET /metrics``: series and values after known traffic (parsed with prometheus-client's own
parser), access rules, state gauges (circuits, telemetry sink, reloads), label bounds, and the
aggregate across ``serve --workers 2``."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import build_app
from gateway.config import load_config
from gateway.config.observability import MetricsSettings
from gateway.observability import OBSERVABILITY
from gateway.observability.metrics import GatewayMetrics
from gateway.proxy.server import BackgroundServer
from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.gateway import gateway_config
from tests.support.telemetry import free_port, gateway_env, wait_for

CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}
MESSAGES = [{"role": "user", "content": "hello"}]
BASE = """
telemetry: {enabled: false}
routing: {retry: {attempts: 2, base_backoff_ms: 1, max_backoff_ms: 1}}
pricing: {models: {up-model: {input: 1.0, output: 2.0}}}
"""


def scrape(url: str, headers: dict | None = None) -> dict:
    """``{(name, frozenset(labels)): value}`` of every sample at ``url``/metrics."""
    r = httpx.get(f"{url}/metrics", headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: dict, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= lbls)


def chat(url: str, model: str = "gpt-test", stream: bool = False, **extra) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, **extra}
    if stream:
        body["stream"] = True
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
        r.read()  # to the end: the request is complete, not abandoned
        return r


def test_series_and_values_after_known_traffic(make_gateway, upstream):
    srv = make_gateway(gateway_config(upstream.url, extra=BASE))
    upstream.json(CHAT, times=2)
    assert chat(srv.url).status_code == 200 and chat(srv.url).status_code == 200
    upstream.sse([sse_event(chat_chunk(role=True)), sse_event(chat_chunk("Hi")), sse_event(chat_chunk(finish="stop")),
                  sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 5, "completion_tokens": 2,
                                                             "total_tokens": 7})),
                  b"data: [DONE]\n\n"], chunk_delay_s=0.01, times=1)
    assert chat(srv.url, stream=True).status_code == 200
    upstream.json({"error": {"message": "down", "type": "server_error"}}, status=500, times=2)
    assert chat(srv.url).status_code == 500  # two attempts, both 5xx
    assert chat(srv.url, model="no-such-model").status_code == 404
    assert chat(srv.url, model="").status_code == 400

    m = scrape(srv.url)
    req = "llm_gateway_requests_total"
    assert total(m, req, model="gpt-test", backend="fake", status="200", gen_ai_operation_name="chat") == 3
    assert total(m, req, model="gpt-test", backend="fake", status="500") == 1
    assert total(m, req, model="unknown", backend="none", status="404") == 1  # not the client's string
    assert total(m, req, model="none", status="400") == 1
    assert not any("no-such-model" in str(k) for k in m)
    # GenAI histograms.
    dur = "gen_ai_client_operation_duration_seconds"
    gen = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-test",
           "backend": "fake"}
    assert total(m, dur + "_count", status="200", error_type="none", **gen) == 3
    assert total(m, dur + "_count", status="500", error_type="upstream_http_error", **gen) == 1
    assert 0 < total(m, dur + "_sum", status="200", **gen) < 30
    assert total(m, dur + "_bucket", status="200", le="+Inf", **gen) == 3
    tok = "gen_ai_client_token_usage"
    assert total(m, tok + "_sum", gen_ai_token_type="input", **gen) == 11 + 11 + 5
    assert total(m, tok + "_sum", gen_ai_token_type="output", **gen) == 3 + 3 + 2
    assert total(m, tok + "_count", gen_ai_token_type="input", **gen) == 3
    assert total(m, tok + "_bucket", gen_ai_token_type="input", le="16.0", **gen) == 3
    ttft = "gen_ai_server_time_to_first_token_seconds"
    assert total(m, ttft + "_count", **gen) == 1  # streams only
    # Gateway internals.
    assert m[("llm_gateway_requests_in_flight", frozenset())] == 0
    att = "llm_gateway_upstream_attempts_total"
    assert total(m, att, backend="fake", target_model="up-model", status="200") == 3
    assert total(m, att, backend="fake", target_model="up-model", status="500") == 2
    assert total(m, "llm_gateway_upstream_errors_total", backend="fake", error_class="5xx") == 2
    assert total(m, "llm_gateway_circuit_state", target="fake/up-model", backend="fake") == 0  # closed
    assert total(m, "llm_gateway_upstream_in_flight", target="fake/up-model") == 0
    cost = (11 * 1.0 + 3 * 2.0) * 2 / 1e6 + (5 * 1.0 + 2 * 2.0) / 1e6
    assert total(m, "llm_gateway_cost_usd_total", model="gpt-test", backend="fake") == pytest.approx(cost)
    config_hash = srv.app[OBSERVABILITY].metrics._config_hash
    assert m[("llm_gateway_config_info", frozenset({("config_hash", config_hash)}))] == 1
    assert not any(n.startswith("llm_gateway_telemetry") for n, _ in m)  # telemetry is off here


def test_circuit_state_and_cache_status(make_gateway, upstream):
    extra = BASE.replace("routing: {retry: {attempts: 2, base_backoff_ms: 1, max_backoff_ms: 1}}",
                         "routing: {retry: {attempts: 1}, circuit_breaker: {consecutive_failures: 2, cooldown_s: 60}}")
    srv = make_gateway(gateway_config(upstream.url, extra=extra + "cache: {enabled: true}\n"))
    upstream.json(CHAT, times=1)
    assert chat(srv.url, temperature=0).status_code == 200
    assert chat(srv.url, temperature=0).status_code == 200  # the same request: a hit
    upstream.json({"error": {"message": "x"}}, status=503)
    for _ in range(2):
        chat(srv.url, temperature=1)
    m = scrape(srv.url)
    assert total(m, "llm_gateway_circuit_state", target="fake/up-model") == 2  # open
    assert total(m, "llm_gateway_requests_total", cache_status="hit", status="200") == 1
    assert total(m, "llm_gateway_requests_total", cache_status="miss", status="200") == 1


def test_access_rules(make_gateway, upstream):
    open_srv = make_gateway(gateway_config(upstream.url, extra=BASE))
    assert httpx.get(f"{open_srv.url}/metrics").status_code == 200  # loopback is in the default allow_from
    token_srv = make_gateway(gateway_config(upstream.url, extra=BASE + """
server: {admin_key: admin-secret-1}
observability: {metrics: {bearer_token: scrape-secret-1}}
"""))
    url = f"{token_srv.url}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer scrape-secret-1"}).status_code == 200
    assert httpx.get(url, headers={"Authorization": "Bearer admin-secret-1"}).status_code == 200
    # The admin guard does not apply: the scrape token opens /metrics, not /admin.
    assert httpx.get(f"{token_srv.url}/admin/config",
                     headers={"Authorization": "Bearer scrape-secret-1"}).status_code == 401
    net_srv = make_gateway(gateway_config(upstream.url, extra=BASE + """
observability: {metrics: {allow_from: [10.0.0.0/8]}}
"""))
    assert httpx.get(f"{net_srv.url}/metrics").status_code == 403
    off = make_gateway(gateway_config(upstream.url, extra=BASE + "observability: {metrics: {enabled: false}}\n"))
    assert httpx.get(f"{off.url}/metrics").status_code == 404
    assert off.app[OBSERVABILITY].metrics is None


def test_virtual_keys_are_not_needed_to_scrape(make_gateway, upstream):
    key_hash = hashlib.sha256(b"sk-tenant-key").hexdigest()
    srv = make_gateway(gateway_config(upstream.url, extra=BASE + f"keys: [{{tenant: acme, sha256: {key_hash}}}]\n"))
    upstream.json(CHAT)
    assert httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MESSAGES},
                      headers={"Authorization": "Bearer sk-tenant-key"}).status_code == 200
    assert httpx.post(f"{srv.url}/v1/chat/completions",
                      json={"model": "gpt-test", "messages": MESSAGES}).status_code == 401
    m = scrape(srv.url)
    assert total(m, "llm_gateway_cost_usd_total", tenant="acme") > 0
    assert total(m, "llm_gateway_requests_total", status="401") == 1


def test_sink_counters_and_config_state_from_refresh():
    sink = SimpleNamespace(stats=lambda: dict(stats))
    watcher = SimpleNamespace(reloads=0, last_error=None, current=SimpleNamespace(content_hash="aaa"))
    stats = {"written": 10, "lost": 1, "log_bytes": 4096, "full": True, "lag_s": 3.5}
    metrics = GatewayMetrics(MetricsSettings(), models=lambda: {}, sink=lambda: sink, watcher=lambda: watcher)
    metrics.refresh()
    stats.update(written=15, log_bytes=1024, full=False, lag_s=None)
    watcher.reloads, watcher.current = 2, SimpleNamespace(content_hash="bbb")
    watcher.last_error = "models.x: bad"
    metrics.refresh()
    metrics.refresh()  # idempotent: counters move by deltas only
    from prometheus_client import generate_latest
    samples = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    records = "llm_gateway_telemetry_records_total"
    assert {o: total(samples, records, outcome=o) for o in ("written", "lost")} == {"written": 15, "lost": 1}
    assert samples[("llm_gateway_telemetry_log_bytes", frozenset())] == 1024
    assert samples[("llm_gateway_telemetry_log_full", frozenset())] == 0
    assert samples[("llm_gateway_telemetry_ingest_lag_seconds", frozenset())] == 0
    assert samples[("llm_gateway_config_reloads_total", frozenset())] == 2
    assert samples[("llm_gateway_config_reload_error", frozenset())] == 1
    assert total(samples, "llm_gateway_config_info", config_hash="bbb") == 1
    assert ("llm_gateway_config_info", frozenset({("config_hash", "aaa")})) not in samples


def test_reload_shows_in_metrics(tmp_path, upstream):
    path = tmp_path / "gateway.yaml"
    path.write_text(gateway_config(upstream.url, extra=BASE + "server: {reload_interval_s: 0.05}\n"))
    snapshot = load_config(path)
    with BackgroundServer(build_app(snapshot)) as srv:
        before = scrape(srv.url)
        assert total(before, "llm_gateway_config_info", config_hash=snapshot.content_hash) == 1
        path.write_text(gateway_config(upstream.url, extra=BASE.replace("attempts: 2", "attempts: 3")
                                       + "server: {reload_interval_s: 0.05}\n"))
        after = wait_for(lambda: (lambda m: m if total(m, "llm_gateway_config_reloads_total") >= 1 else None)(
            scrape(srv.url)), timeout=10, what="a reload")
        new_hash = load_config(path).content_hash
        assert total(after, "llm_gateway_config_info", config_hash=new_hash) == 1
        assert total(after, "llm_gateway_config_info", config_hash=snapshot.content_hash) == 0


def test_metrics_aggregate_across_workers(tmp_path):
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text("backends:\n  mock: {type: mock}\nmodels:\n  mock-gpt: {targets: [{backend: mock}]}\n"
                      "telemetry: {enabled: false}\n"
                      f"observability: {{metrics: {{multiprocess_dir: {tmp_path / 'prom'}}}}}\n")
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                             "--workers", "2"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=gateway_env())
    url = f"http://127.0.0.1:{port}"
    try:
        def ready():
            try:
                return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(ready, timeout=60, what="the gateway")
        pids = set()
        n = 40
        for _ in range(n):  # new connections: the kernel spreads them across the workers
            with httpx.Client() as client:
                r = client.post(f"{url}/v1/chat/completions", json={"model": "mock-gpt", "messages": MESSAGES})
                assert r.status_code == 200
        # Each scrape lands on either worker and reports the sum of both.
        for _ in range(6):
            with httpx.Client() as client:
                m = scrape(url)
            assert total(m, "llm_gateway_requests_total", model="mock-gpt", status="200") == n
            assert total(m, "gen_ai_client_operation_duration_seconds_count", status="200") == n
            assert m[("llm_gateway_requests_in_flight", frozenset())] == 0
        files = {p.name for p in (tmp_path / "prom").glob("*.db")}
        pids = {name.rsplit("_", 1)[1] for name in files if name.startswith("counter_")}
        assert len(pids) == 2, files  # both workers served (and counted) requests
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]


def test_vllm_scrape_state_from_refresh():
    clock = [100.0]
    health = SimpleNamespace(clock=lambda: clock[0], all=lambda: [])
    scrapers = {"vllm-a": SimpleNamespace(last_ok_at=97.5, up=True, failures=0),
                "vllm-b": SimpleNamespace(last_ok_at=None, up=False, failures=3)}
    fleet = SimpleNamespace(scrapers=scrapers)
    metrics = GatewayMetrics(MetricsSettings(), models=lambda: {}, health=health, fleet=lambda: fleet)
    metrics.refresh()
    clock[0] = 101.0
    scrapers["vllm-b"].failures = 4
    metrics.refresh()
    from prometheus_client import generate_latest
    text = generate_latest(metrics.registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    assert total(samples, "llm_gateway_vllm_scrape_age_seconds", backend="vllm-a") == pytest.approx(3.5)
    assert total(samples, "llm_gateway_vllm_scrape_age_seconds", backend="vllm-b") == -1
    assert total(samples, "llm_gateway_vllm_up", backend="vllm-a") == 1
    assert total(samples, "llm_gateway_vllm_up", backend="vllm-b") == 0
    assert total(samples, "llm_gateway_vllm_scrape_failures_total", backend="vllm-b") == 4
    # No fleet: no vLLM series at all.
    plain = GatewayMetrics(MetricsSettings(), models=lambda: {})
    plain.refresh()
    assert "llm_gateway_vllm" not in generate_latest(plain.registry).decode()


def test_vllm_scrapes_show_in_metrics(make_gateway):
    from tests.support.fake_upstream import FakeVllm

    with FakeVllm("vllm-a") as a:
        srv = make_gateway(f"""
telemetry: {{enabled: false}}
backends:
  va: {{type: vllm, base_url: "{a.url}", vllm: {{scrape_interval_ms: 40, timeout_ms: 500}}}}
models:
  tiny: {{targets: [{{backend: va, model: tiny-llama}}]}}
""")
        m = wait_for(lambda: (lambda m: m if total(m, "llm_gateway_vllm_scrape_age_seconds", backend="va") >= 0
                              else None)(scrape(srv.url)), timeout=10, what="a good scrape")
        assert total(m, "llm_gateway_vllm_scrape_age_seconds", backend="va") < 5
        assert total(m, "llm_gateway_vllm_up", backend="va") == 1
