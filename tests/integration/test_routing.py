"""Routing: strategies, rules, retries, fallbacks, circuit breaking and hot reload."""

from __future__ import annotations

import asyncio
import collections
import random
import time

import httpx
import openai
import pytest

from gateway.app import HEALTH, TOKENS, WATCHER
from gateway.config import parse_config
from gateway.config.models import CircuitBreakerSettings
from gateway.core.errors import NoHealthyTargetError
from gateway.core.tokens import TokenCounter
from gateway.proxy.upstream import BackendClient
from gateway.routing.health import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, HealthRegistry
from gateway.routing.router import Router
from tests.support.fake_clock import FakeClock
from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.gateway import serve
from tests.support.polling import async_wait_for, wait_for
from tests.support.redis_server import RedisServer
from tests.support.routing import MSG, OK, two_target_config, two_upstreams  # noqa: F401


def make_router(yaml_text: str, seed: int = 7, clock=time.monotonic) -> Router:
    cfg = parse_config(yaml_text).config
    clients = {name: BackendClient(name, b, None) for name, b in cfg.backends.items()}
    counter = TokenCounter()
    return Router(cfg, clients, HealthRegistry(clock),
                  lambda body: counter.count_prompt("chat/completions", body, "gpt-4"), random.Random(seed))


BACKENDS = """
backends:
  a: {type: mock}
  b: {type: mock}
  c: {type: mock}
"""


def test_weighted_split_within_tolerance():
    router = make_router(BACKENDS + """
models:
  m:
    strategy: weighted
    targets: [{backend: a, weight: 70}, {backend: b, weight: 20}, {backend: c, weight: 10}]
""")
    firsts = collections.Counter(router.plan("m", {"messages": MSG}, False, {}).ordered[0].client.name
                                 for _ in range(10_000))
    assert abs(firsts["a"] / 10_000 - 0.7) < 0.02
    assert abs(firsts["b"] / 10_000 - 0.2) < 0.02
    assert abs(firsts["c"] / 10_000 - 0.1) < 0.02
    plan = router.plan("m", {"messages": MSG}, False, {})
    assert len(plan.ordered) == 3 and plan.strategy == "weighted" and plan.rule == "default"
    assert {p["target"]: p["score"] for p in plan.provenance()} == {"a/m": 0.7, "b/m": 0.2, "c/m": 0.1}


def test_priority_order():
    router = make_router(BACKENDS + """
models:
  m:
    strategy: priority
    targets: [{backend: a, priority: 2}, {backend: b, priority: 0}, {backend: c, priority: 1}]
""")
    assert [c.client.name for c in router.plan("m", {}, False, {}).ordered] == ["b", "c", "a"]


def rule_router() -> Router:
    return make_router(BACKENDS + """
models:
  small: {targets: [{backend: a}]}
  large: {targets: [{backend: b, context_window: 128000}]}
  fast: {targets: [{backend: c}]}
routes:
  - {name: by-header, match: {headers: {x-tier: gold}}, model: fast}
  - {name: by-regex, match: {header_regex: {user-agent: "^batch-"}}, model: large}
  - {name: by-metadata, match: {metadata: {team: search}}, model: fast}
  - {name: by-tenant, match: {tenant: "acme*"}, model: large}
  - {name: by-key, match: {api_key_id: key-9}, model: large}
  - {name: by-prompt, match: {prompt_id: summarize}, model: large}
  - {name: streams, match: {stream: true, model: "gpt-*"}, model: fast}
  - {name: long-prompts, match: {model: "gpt-*", min_prompt_tokens: 50}, model: large}
  - {name: short-prompts, match: {model: "gpt-*", max_prompt_tokens: 49}, targets: [{backend: a, model: tiny}]}
""")


@pytest.mark.parametrize("kwargs,rule,backend", [
    ({"headers": {"x-tier": "gold"}}, "by-header", "c"),
    ({"headers": {"user-agent": "batch-runner/1"}}, "by-regex", "b"),
    ({"metadata": {"team": "search"}}, "by-metadata", "c"),
    ({"tenant": "acme-corp"}, "by-tenant", "b"),
    ({"api_key_id": "key-9"}, "by-key", "b"),
    ({"prompt_id": "summarize"}, "by-prompt", "b"),
    ({"stream": True, "model": "gpt-4o"}, "streams", "c"),
    ({"model": "gpt-4o", "body": {"messages": [{"role": "user", "content": "word " * 100}]}}, "long-prompts", "b"),
    ({"model": "gpt-4o"}, "short-prompts", "a"),
    ({"model": "small"}, "default", "a"),
])
def test_rule_matching(kwargs, rule, backend):
    router = rule_router()
    plan = router.plan(kwargs.get("model", "small"), kwargs.get("body", {"messages": MSG}),
                       kwargs.get("stream", False), kwargs.get("headers", {}), kwargs.get("metadata"),
                       kwargs.get("tenant", ""), kwargs.get("api_key_id", ""), kwargs.get("prompt_id", ""))
    assert plan.rule == rule
    assert plan.ordered[0].client.name == backend
    if rule == "short-prompts":
        assert plan.ordered[0].upstream_model == "tiny"


def test_context_window_skips_small_targets_up_front():
    router = make_router(BACKENDS + """
models:
  m:
    targets: [{backend: a, context_window: 100}, {backend: b, context_window: 100000}]
""")
    plan = router.plan("m", {"messages": [{"role": "user", "content": "word " * 200}]}, False, {})
    assert [c.client.name for c in plan.ordered] == ["b"]
    assert {"target": "a/m", "score": None, "skipped": "context_window"} in plan.provenance()
    plan = router.plan("m", {"messages": MSG, "max_tokens": 500}, False, {})
    assert [c.client.name for c in plan.ordered] == ["b"]


def test_circuit_opens_skips_probes_and_closes():
    now = [1000.0]
    breaker = CircuitBreaker(CircuitBreakerSettings(consecutive_failures=3, cooldown_s=10), clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.record(False)
    assert breaker.state == CLOSED
    breaker.record(False)
    assert breaker.state == OPEN and not breaker.allow()
    now[0] += 9.9
    assert not breaker.allow()
    now[0] += 0.2
    assert breaker.peek() == HALF_OPEN
    assert breaker.allow()  # the one probe
    assert not breaker.allow()  # nobody else while it is out
    breaker.record(False)  # probe failed: open again for a full cooldown
    assert breaker.state == OPEN
    now[0] += 10.1
    assert breaker.allow()
    breaker.record(True)
    assert breaker.state == CLOSED and breaker.allow() and breaker.allow()


def test_circuit_opens_on_error_rate():
    now = [0.0]
    breaker = CircuitBreaker(CircuitBreakerSettings(consecutive_failures=100, error_rate=0.5, min_requests=10,
                                                    window_s=30), clock=lambda: now[0])
    for i in range(10):
        breaker.record(i % 3 != 0)  # 4 failures of 10: under the rate
    assert breaker.state == CLOSED
    for _ in range(8):
        breaker.record(False)
    assert breaker.state == OPEN


def test_open_circuit_is_skipped_and_503_when_nothing_is_left():
    now = [0.0]
    router = make_router(BACKENDS + """
models:
  m: {targets: [{backend: a}, {backend: b}]}
routing:
  circuit_breaker: {consecutive_failures: 1, cooldown_s: 5}
""", clock=lambda: now[0])
    a_state = router.plan("m", {}, False, {}).ordered[0].state
    a_state.breaker.record(False)
    plan = router.plan("m", {}, False, {})
    assert [c.client.name for c in plan.ordered] == ["b"]
    assert {"target": "a/m", "score": None, "skipped": "circuit_open"} in plan.provenance()
    plan.ordered[0].state.breaker.record(False)
    with pytest.raises(NoHealthyTargetError) as info:
        router.plan("m", {}, False, {})
    assert info.value.status == 503 and "circuit_open" in info.value.message
    now[0] = 6.0  # cooldown over: half-open targets are offered again
    assert len(router.plan("m", {}, False, {}).ordered) == 2


# --- through the gateway, with fake upstreams ---------------------------------------------


def post(gw, **body):
    return httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": MSG, **body}, timeout=30)


def test_retry_then_success(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url))
    a.json(OK)
    a.json({"error": {"message": "boom"}}, status=500, times=1)
    r = post(gw)
    assert r.status_code == 200 and r.headers["x-gateway-backend"] == "up-a"
    assert r.headers["x-gateway-attempts"] == "2" and len(a.received) == 2 and not b.received


def test_503_falls_back_to_next_target(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url))
    a.json({"error": {"message": "overloaded"}}, status=503)
    b.json(OK)
    r = post(gw)
    assert r.status_code == 200 and r.headers["x-gateway-backend"] == "up-b"
    assert r.headers["x-gateway-attempts"] == "3"  # two tries on up-a, then up-b
    assert b.last.json()["model"] == "model-b" and b.last.headers["Authorization"] == "Bearer sk-b"


def test_all_targets_failing_passes_the_last_error_through(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url))
    a.json({"error": {"message": "a down"}}, status=503)
    b.json({"error": {"message": "b down", "type": "server_error", "param": None, "code": None}}, status=502)
    r = post(gw)
    assert r.status_code == 502 and r.json()["error"]["message"] == "b down"


def test_429_retry_after_is_honoured(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url))
    a.json(OK)
    a.json({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0.3"}, times=1)
    t0 = time.perf_counter()
    r = post(gw)
    assert r.status_code == 200 and r.headers["x-gateway-backend"] == "up-a"
    assert time.perf_counter() - t0 >= 0.3
    assert len(a.received) == 2 and not b.received


def test_429_retry_after_beyond_the_cap_moves_on(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url))
    a.json({"error": {"message": "later"}}, status=429, headers={"Retry-After": "30"})
    b.json(OK)
    t0 = time.perf_counter()
    r = post(gw)
    assert r.headers["x-gateway-backend"] == "up-b" and time.perf_counter() - t0 < 10  # did not wait 30 s
    assert len(a.received) == 1


def test_plain_400_is_not_retried_or_failed_over(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url))
    a.json({"error": {"message": "Invalid value for 'temperature'", "type": "invalid_request_error",
                      "param": "temperature", "code": None}}, status=400)
    r = post(gw)
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    assert len(a.received) == 1 and not b.received


MODEL_NOT_FOUND = {  # OpenAI's answer for a model that is not deployed there
    "error": {"message": "The model `model-a` does not exist or you do not have access to it.",
              "type": "invalid_request_error", "param": None, "code": "model_not_found"}}
VLLM_NOT_FOUND = {"object": "error", "message": "The model `model-a` does not exist.", "type": "NotFoundError",
                  "param": None, "code": 404}


@pytest.mark.parametrize("missing", [MODEL_NOT_FOUND, VLLM_NOT_FOUND], ids=["openai", "vllm"])
def test_model_not_found_moves_to_the_next_target(make_gateway, two_upstreams, missing):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url))
    a.json(missing, status=404)
    b.json(OK)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)
    r = client.chat.completions.with_raw_response.create(model="m", messages=MSG)
    assert r.parse().choices[0].message.content == "ok"
    assert r.headers["x-gateway-backend"] == "up-b" and r.headers["x-gateway-attempts"] == "2"  # not retried
    assert len(a.received) == 1 and b.last.json()["model"] == "model-b"


def test_not_found_stays_the_callers_unless_fallback_on_names_it(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url, extra="  fallback_on: [connect, timeout, 5xx]"))
    a.json(MODEL_NOT_FOUND, status=404)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="m", messages=MSG)
    assert caught.value.code == "model_not_found" and not b.received
    # Any other 404 (here a path the backend does not serve) is the caller's, whatever fallback_on says.
    gw = make_gateway(two_target_config(a.url, b.url))
    a.json({"detail": "Not Found"}, status=404)
    r = post(gw)
    assert r.status_code == 404 and r.headers["x-gateway-backend"] == "up-a" and not b.received


def test_context_length_error_moves_to_a_larger_target(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url, a_extra=", context_window: 8000",
                                        b_extra=", context_window: 128000"))
    a.json({"error": {"message": "This model's maximum context length is 8000 tokens.",
                      "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}},
           status=400)
    b.json(OK)
    r = post(gw)
    assert r.status_code == 200 and r.headers["x-gateway-backend"] == "up-b"
    assert len(a.received) == 1


def test_stream_fails_over_before_the_first_byte_but_not_after(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url))
    good = [sse_event(chat_chunk("from-b")), b"data: [DONE]\n\n"]
    a.sse([sse_event(chat_chunk("x"))], abort_after=0)  # headers, then the connection dies
    b.sse(good)
    r = post(gw, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["x-gateway-backend"] == "up-b"
    assert r.content == b"".join(good)

    a.sse([sse_event(chat_chunk("partial")), sse_event(chat_chunk("more"))], abort_after=1)
    b.received.clear()
    r = post(gw, stream=True, stream_options={"include_usage": True})
    assert r.headers["x-gateway-backend"] == "up-a"
    assert r.content.startswith(sse_event(chat_chunk("partial")))
    assert b'"error"' in r.content and not b.received  # an error event, never a second backend's bytes


def test_least_latency_prefers_the_faster_upstream(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url, strategy="least-latency",
                                        extra="  exploration: 0.0"))
    # a gap no stall of a busy machine closes: the latency average must tell them apart
    a.json(OK, delay_s=0.5)
    b.json(OK, delay_s=0.0)
    for _ in range(4):  # warm-up: both get measured
        post(gw)
    a.received.clear()
    b.received.clear()
    for _ in range(20):
        post(gw)
    assert len(b.received) == 20 and not a.received


def test_least_busy_spreads_concurrent_load(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url, strategy="least-busy"))
    a.json(OK)
    b.json(OK)
    a.hold()  # every request stays in flight until all ten have been placed
    b.hold()

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [asyncio.ensure_future(client.post(f"{gw.url}/v1/chat/completions",
                                                       json={"model": "m", "messages": MSG})) for _ in range(10)]
            await async_wait_for(lambda: len(a.received) + len(b.received) == 10, what="ten requests in flight")
            a.release()
            b.release()
            await asyncio.gather(*calls)

    asyncio.run(burst())
    assert len(a.received) == 5 and len(b.received) == 5


def test_circuit_breaker_through_the_gateway(make_gateway, two_upstreams):
    a, b = two_upstreams
    gw = make_gateway(two_target_config(a.url, b.url, extra="  circuit_breaker: {consecutive_failures: 2, "
                                                         "cooldown_s: 1.5}"))
    clock = FakeClock()
    gw.app[HEALTH].use_clock(clock)
    a.json({"error": {"message": "down"}}, status=500)
    b.json(OK)
    post(gw)  # two failures on up-a: its circuit opens
    a.received.clear()
    r = post(gw)
    assert r.headers["x-gateway-backend"] == "up-b" and not a.received  # skipped while open
    clock.advance(1.4)
    assert post(gw).headers["x-gateway-backend"] == "up-b" and not a.received  # still cooling down
    clock.advance(0.2)
    a.json(OK)
    r = post(gw)  # half-open probe succeeds and closes it
    assert r.headers["x-gateway-backend"] == "up-a" and len(a.received) == 1
    assert post(gw).headers["x-gateway-backend"] == "up-a"


def test_unknown_model_still_404_and_rule_can_redirect(make_gateway, two_upstreams):
    a, b = two_upstreams
    config = two_target_config(a.url, b.url).replace(
        "routing:\n", "routes:\n  - {name: legacy, match: {model: 'gpt-3*'}, model: m}\nrouting:\n")
    gw = make_gateway(config)
    a.json(OK)
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-3.5-turbo", "messages": MSG})
    assert r.headers["x-gateway-backend"] == "up-a" and a.last.json()["model"] == "model-a"
    assert httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "other", "messages": MSG}).status_code == 404


def test_hot_reload_under_load_and_invalid_edit_keeps_old_config(make_gateway, two_upstreams, tmp_path):

    a, b = two_upstreams
    a.json(OK)
    b.json(OK)
    path = tmp_path / "gateway.yaml"
    base = two_target_config(a.url, b.url).replace("routing:\n", "server:\n  reload_interval_s: 0.05\nrouting:\n")
    path.write_text(base)
    with serve(path=path) as gw:
        first_hash = httpx.get(f"{gw.url}/readyz").json()["config_hash"]

        seen = collections.Counter()

        async def load(done) -> None:
            """Bursts of 8 concurrent requests until ``done()`` (every one must succeed)."""
            async with httpx.AsyncClient(timeout=30) as client:
                while not done():
                    rs = await asyncio.gather(*[client.post(f"{gw.url}/v1/chat/completions",
                                                            json={"model": "m", "messages": MSG}) for _ in range(8)])
                    for r in rs:
                        assert r.status_code == 200
                        seen[r.headers["x-gateway-backend"]] += 1

        async def scenario():
            task = asyncio.create_task(load(lambda: seen["up-b"] >= 16))
            await async_wait_for(lambda: seen["up-a"] > 0 or task.done(), what="load on the first config")
            # swap target order: up-b now first
            path.write_text(base.replace(
                "targets: [{backend: up-a, model: model-a}, {backend: up-b, model: model-b}]",
                "targets: [{backend: up-b, model: model-b}, {backend: up-a, model: model-a}]"))
            await asyncio.wait_for(task, 60)

        asyncio.run(scenario())

        assert seen["up-a"] > 0 and seen["up-b"] > 0  # both configs served, no request failed
        second_hash = httpx.get(f"{gw.url}/readyz").json()["config_hash"]
        assert second_hash != first_hash

        path.write_text(base + "\nmodels_typo: {}\n")  # invalid: rejected, old config stays
        wait_for(lambda: gw.app[WATCHER].status()["last_error"], what="the invalid edit to be refused")
        assert httpx.get(f"{gw.url}/readyz").json()["config_hash"] == second_hash
        assert post(gw).headers["x-gateway-backend"] == "up-b"


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.stop()


def test_circuit_state_is_shared_through_redis(make_gateway, two_upstreams, own_redis):
    """Two gateway instances: a circuit opened by one is skipped by the other."""
    a, b = two_upstreams
    config = two_target_config(a.url, b.url, extra=f"  redis_url: {own_redis.url}\n"
                                                   "  circuit_breaker: {consecutive_failures: 2, cooldown_s: 60}")
    gw1, gw2 = make_gateway(config), make_gateway(config)
    b.json(OK)
    a.json(OK)
    assert post(gw2).headers["x-gateway-backend"] == "up-a"  # gw2 knows the target

    def gw2_breaker():
        return next(st.breaker for st in gw2.app[HEALTH].all() if st.key == "up-a/model-a")

    a.json({"error": {"message": "down"}}, status=500)
    post(gw1)  # opens up-a's circuit on gw1, published to Redis
    with own_redis.client() as client:  # published in the background
        ttl = wait_for(lambda: max(client.pttl("llm-gateway:circuit:up-a/model-a"), 0), what="the publication")
    assert 0 < ttl <= 60000  # a long cooldown: still open however slow the machine
    wait_for(lambda: gw2_breaker().state == OPEN, what="gw2's poller to pick the open circuit up")
    a.received.clear()
    a.json(OK)
    assert post(gw2).headers["x-gateway-backend"] == "up-b" and not a.received


def test_a_target_that_cannot_serve_the_request_is_skipped_not_failed(make_gateway, two_upstreams):
    """An adapter's 400 refusal (Anthropic has no n > 1) moves on without hurting the circuit."""
    a, b = two_upstreams
    config = f"""
backends:
  claude: {{type: anthropic, base_url: "{a.url}", api_key: sk-ant}}
  gpt: {{type: openai, base_url: "{b.url}", api_key: sk-b}}
models:
  both: {{targets: [{{backend: claude, model: claude-x}}, {{backend: gpt, model: gpt-x}}]}}
  only-claude: {{targets: [{{backend: claude, model: claude-x}}]}}
routing:
  circuit_breaker: {{consecutive_failures: 2}}
telemetry: {{enabled: false}}
"""
    gw = make_gateway(config)
    b.json(OK)
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "both", "messages": MSG, "n": 2})
    assert r.status_code == 200 and r.headers["x-gateway-backend"] == "gpt" and not a.received
    for _ in range(4):
        r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "only-claude", "messages": MSG, "n": 2})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    a.json({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1}})
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "only-claude", "messages": MSG})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hi"  # circuit still closed


def test_admin_backends_and_config(make_gateway, two_upstreams, tmp_path):

    a, b = two_upstreams
    a.json({"error": {"message": "down"}}, status=500)
    b.json(OK)
    path = tmp_path / "gateway.yaml"
    path.write_text(two_target_config(a.url, b.url, extra="  redis_url: redis://:hunter2@127.0.0.1:6379/0\n"
                                                         "  circuit_breaker: {consecutive_failures: 2}\n"
                                                         "server: {admin_key: adm-secret-1}\n"))
    with serve(path=path) as gw:
        post(gw)
        assert httpx.get(f"{gw.url}/admin/backends").status_code == 401  # admin key required
        auth = {"Authorization": "Bearer adm-secret-1"}
        body = httpx.get(f"{gw.url}/admin/backends", headers=auth).json()
        targets = {t["target"]: t for t in body["targets"]}
        assert targets["up-a/model-a"]["circuit"] == "open" and targets["up-a/model-a"]["failures"] == 2
        assert targets["up-b/model-b"]["circuit"] == "closed" and targets["up-b/model-b"]["ewma_latency_ms"] > 0
        cfg = httpx.get(f"{gw.url}/admin/config", headers=auth)
        status = cfg.json()
        assert status["config_hash"] == body["config_hash"] and status["last_error"] is None
        assert "hunter2" not in cfg.text and "sk-a" not in cfg.text and "adm-secret-1" not in cfg.text
        assert status["config"]["models"]["m"]["strategy"] == "priority"


def test_an_emptied_config_file_keeps_the_running_config(two_upstreams, tmp_path):

    a, b = two_upstreams
    a.json(OK)
    path = tmp_path / "gateway.yaml"
    path.write_text(two_target_config(a.url, b.url) + "server: {reload_interval_s: 0.05}\n")
    with serve(path=path) as gw:
        before = httpx.get(f"{gw.url}/readyz").json()["config_hash"]
        path.write_text("")
        wait_for(lambda: gw.app[WATCHER].status()["last_error"], what="the empty file to be refused")
        assert httpx.get(f"{gw.url}/readyz").json()["config_hash"] == before
        assert "empty" in httpx.get(f"{gw.url}/admin/config").json()["last_error"]
        assert post(gw).status_code == 200


def test_token_rules_skip_tiktoken_when_the_cheap_bound_decides():
    """Short prompts cannot reach min_prompt_tokens: settled without tokenising."""
    counted = []
    cfg = parse_config(BACKENDS + """
models:
  small: {targets: [{backend: a, context_window: 100000}]}
  large: {targets: [{backend: b}]}
routes:
  - {name: long, match: {min_prompt_tokens: 500}, model: large}
""").config
    clients = {name: BackendClient(name, b, None) for name, b in cfg.backends.items()}
    counter = TokenCounter()

    def count(body):
        counted.append(1)
        return counter.count_prompt("chat/completions", body, "gpt-4")

    router = Router(cfg, clients, HealthRegistry(), count, random.Random(1))
    assert router.plan("small", {"messages": MSG}, False, {}).rule == "default"
    assert not counted  # neither the rule nor the context window needed tiktoken
    long_body = {"messages": [{"role": "user", "content": "word " * 600}]}
    assert router.plan("small", long_body, False, {}).rule == "long" and counted
    from gateway.core.tokens import prompt_tokens_upper_bound
    assert prompt_tokens_upper_bound(long_body) >= counter.count_prompt("chat/completions", long_body, "gpt-4")


def test_a_serving_gateway_loads_an_encoding_only_for_a_prompt_the_bound_cannot_settle(make_gateway, two_upstreams):
    """A token rule does not load tiktoken at start (~0.1 GB): short prompts are settled by the
    cheap bound; the first prompt the bound cannot settle loads the encoding (off the event
    loop) and is routed by its real count."""
    a, b = two_upstreams
    a.json(OK)
    b.json(OK)
    gw = make_gateway(f"""
backends:
  up-a: {{type: openai, base_url: "{a.url}", api_key: sk-a}}
  up-b: {{type: openai, base_url: "{b.url}", api_key: sk-b}}
models:
  m: {{targets: [{{backend: up-a, model: model-a}}]}}
  large: {{targets: [{{backend: up-b, model: model-b}}]}}
routes:
  - {{name: long, match: {{min_prompt_tokens: 500}}, model: large}}
telemetry: {{enabled: false}}
""")
    tokens = gw.app[TOKENS]
    assert not tokens.ready("m")  # nothing loaded at start
    assert post(gw).headers["x-gateway-backend"] == "up-a"
    assert not tokens.ready("m")  # "hi" cannot reach 500 tokens: no count, no encoding
    spaced = [{"role": "user", "content": "word " * 120}]  # bound ~600 bytes, ~120 tokens: counted, too short
    assert post(gw, messages=spaced).headers["x-gateway-backend"] == "up-a"
    assert tokens.ready("m")
    long = [{"role": "user", "content": "word " * 600}]
    assert post(gw, messages=long).headers["x-gateway-backend"] == "up-b"
