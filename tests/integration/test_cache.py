"""Cache behaviour through real HTTP: keys, tenants, TTL, Cache-Control, stream replay, storing rules.

Every behaviour test runs against both stores: the in-process memory LRU and the real Redis
on 127.0.0.1:6379 (a namespace of its own per test, deleted afterwards). The helpers
(``cache_config``, ``cache_gateway``, ``store_yaml``, the scripted answers) live in
``tests/support/cache.py``, shared with the other ``test_cache_*`` modules.
"""

from __future__ import annotations

import hashlib
import uuid

import httpx
import orjson
import pytest
import redis

from gateway.app import RUNTIME
from tests.support.cache import (  # noqa: F401
    CHAT,
    DET,
    MESSAGES,
    REDIS_URL,
    _redis_cleanup,
    _strip_usage,
    cache_config,
    cache_gateway,
    redis_namespace,
    store_yaml,
    stream_events,
    until_stored,
)
from tests.support.fake_clock import FakeClock
from tests.support.fake_upstream import FakeUpstream, sse_event


@pytest.fixture
def upstream2():
    with FakeUpstream() as fake:
        yield fake


# --- hits and misses -----------------------------------------------------------------
def test_json_miss_then_hit(cache_gateway, upstream, store_yaml):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    upstream.json(CHAT, delay_s=0.05)
    first = gw.sdk().chat.completions.with_raw_response.create(**DET)
    assert first.headers["x-gateway-cache"] == "miss"
    assert "age" not in first.headers
    until_stored(gw)
    second = gw.sdk().chat.completions.with_raw_response.create(**DET)
    assert second.headers["x-gateway-cache"] == "hit"
    assert int(second.headers["age"]) >= 0
    assert second.http_response.content == first.http_response.content == orjson.dumps(CHAT)
    assert second.parse().choices[0].message.content == "Cached words"
    assert len(upstream.received) == 1
    miss, hit = gw.wait_records(2)[:2]
    assert (miss.cache_status, hit.cache_status) == ("miss", "hit")
    assert miss.cache_saved_ms is None
    assert hit.cache_saved_ms is not None and hit.cache_saved_ms >= 50  # the original latency
    assert hit.status_code == 200 and hit.finish_reason == "stop" and hit.model_served == "up-model"
    assert hit.usage.total_tokens is None  # no model processed it: 0 tokens, 0 cost in its row
    assert miss.usage.total_tokens == 7
    assert hit.t_upstream_start is None  # no upstream call
    assert gw.cache.stats.hits == 1 and gw.cache.stats.misses == 1 and gw.cache.stats.stores == 1
    state = httpx.get(f"{gw.url}/admin/cache").json()  # loopback, no admin key configured
    assert state["stats"]["hits"] == 1 and state["in_flight"] == 0 and state["enabled"] is True
    if state["store"] == "memory":
        assert state["entries"] == 1 and state["bytes"] > len(orjson.dumps(CHAT))
    else:
        assert state["redis_available"] is True


def test_key_covers_output_fields_and_ignores_transport_fields(cache_gateway, upstream, store_yaml):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    upstream.json(CHAT)

    def status(body, headers=None):
        r = gw.post(body, headers)
        assert r.status_code == 200, r.text
        until_stored(gw)
        return r.headers["x-gateway-cache"]

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    assert status(DET) == "miss"
    assert status(DET) == "hit"
    # Transport-only fields do not change the key.
    assert status({**DET, "user": "someone-else"}) == "hit"
    assert status({**DET, "metadata": {"team": "x"}}) == "hit"
    assert status({"temperature": 0.0, "messages": MESSAGES, "model": "gpt-test"}) == "hit"  # order, 0.0 == 0
    # Everything that can change the output does.
    for change in ({"max_tokens": 5}, {"max_completion_tokens": 5}, {"tools": tools},
                   {"tool_choice": "none"}, {"top_p": 0.5}, {"n": 2}, {"stop": ["x"]}, {"seed": 1},
                   {"response_format": {"type": "json_object"}}, {"logprobs": True}, {"presence_penalty": 1},
                   {"frequency_penalty": 1}, {"logit_bias": {"50256": -100}}, {"brand_new_param": 1},
                   {"messages": MESSAGES + [{"role": "user", "content": "more"}]}):
        assert status({**DET, **change}) == "miss", change
    assert status({**DET, "tools": tools}) == "hit"
    assert status({**DET, "tools": tools + tools}) == "miss"
    assert status({**DET, "max_tokens": 5}) == "hit"
    assert status({**DET, "max_tokens": 6}) == "miss"


def test_only_deterministic_requests_by_default(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.json(CHAT)
    body = {"model": "gpt-test", "messages": MESSAGES}  # default temperature: not deterministic
    assert [gw.post(body).headers["x-gateway-cache"] for _ in range(2)] == ["bypass", "bypass"]
    hot = {**body, "temperature": 0.7}
    assert [gw.post(hot).headers["x-gateway-cache"] for _ in range(2)] == ["bypass", "bypass"]
    seeded = {**hot, "seed": 42}
    assert [gw.post(seeded).headers["x-gateway-cache"] for _ in range(2)] == ["miss", "hit"]
    assert len(upstream.received) == 5
    assert gw.wait_records(6)[0].cache_status == "bypass"


def test_per_model_overrides(cache_gateway, upstream):
    models = """
  always-model:
    targets: [{backend: fake, model: up-model}]
    cache: {enabled: true, mode: always}
  no-cache-model:
    targets: [{backend: fake, model: up-model}]
    cache: {enabled: false}
"""
    gw = cache_gateway(cache_config(upstream.url, "enabled: true", models_extra=models))
    upstream.json(CHAT)
    free = {"messages": MESSAGES, "temperature": 1.3}
    assert [gw.post({**free, "model": "always-model"}).headers["x-gateway-cache"] for _ in range(2)] == [
        "miss", "hit"]
    r = gw.post({**DET, "model": "no-cache-model"})
    assert r.status_code == 200 and "x-gateway-cache" not in r.headers
    # The same body for another public model is another entry.
    assert gw.post({**DET, "model": "always-model"}).headers["x-gateway-cache"] == "miss"


def test_model_can_opt_in_while_the_default_is_off(cache_gateway, upstream):
    models = """
  opted-in:
    targets: [{backend: fake, model: up-model}]
    cache: {enabled: true}
"""
    gw = cache_gateway(cache_config(upstream.url, "enabled: false", models_extra=models))
    upstream.json(CHAT)
    r = gw.post(DET)
    assert r.status_code == 200 and "x-gateway-cache" not in r.headers
    assert [gw.post({**DET, "model": "opted-in"}).headers["x-gateway-cache"] for _ in range(2)] == ["miss", "hit"]


def test_cache_off_everywhere_adds_nothing(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: false"))
    upstream.json(CHAT)
    for _ in range(2):
        r = gw.post(DET)
        assert r.status_code == 200 and "x-gateway-cache" not in r.headers
    assert gw.cache.store is None  # no store was even created
    assert gw.cache not in gw.server.app[RUNTIME].current.stages  # nor a stage: requests never meet it
    assert len(upstream.received) == 2
    assert gw.wait_records(2)[0].cache_status == "none"


def test_tenants_of_real_virtual_keys_never_share_entries(cache_gateway, upstream, store_yaml):
    keys = {name: f"sk-gw-{name}-{uuid.uuid4().hex}" for name in ("acme1", "acme2", "globex")}
    entries = "\n".join(f"  - {{tenant: {name[:-1] if name.startswith('acme') else name}, id: {name}, "
                        f"sha256: {hashlib.sha256(k.encode()).hexdigest()}}}" for name, k in keys.items())
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}", extra=f"keys:\n{entries}"))
    upstream.json(CHAT)

    def status(name):
        r = gw.post(DET, {"Authorization": f"Bearer {keys[name]}"})
        assert r.status_code == 200, r.text
        until_stored(gw)
        return r.headers["x-gateway-cache"]

    assert status("acme1") == "miss"
    assert status("acme2") == "hit"  # another key of the same tenant shares the tenant's entries
    assert status("globex") == "miss"  # another tenant never does
    assert status("globex") == "hit"
    assert gw.post(DET).status_code == 401  # and no key, no answer (the cache runs after auth)
    assert len(upstream.received) == 2
    assert [r.tenant for r in gw.wait_records(5)[:4]] == ["acme", "acme", "globex", "globex"]


def test_key_is_computed_after_prompt_injection(cache_gateway, upstream, tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "bot.yaml").write_text("""
versions:
  - version: 1
    messages: [{role: system, content: "Be brief."}]
  - version: 2
    messages: [{role: system, content: "Be thorough."}]
labels: {production: 1, staging: 2}
""")
    gw = cache_gateway(cache_config(upstream.url, "enabled: true", extra="prompts: {dir: prompts}"),
                       base_dir=tmp_path)
    upstream.json(CHAT)

    def status(selector):
        r = gw.post(DET, {"x-gateway-prompt": selector})
        assert r.status_code == 200, r.text
        return r.headers["x-gateway-cache"]

    assert [status("bot@production"), status("bot@1"), status("bot@staging"), status("bot@2")] == [
        "miss", "hit", "miss", "hit"]
    assert [m["content"] for m in upstream.received[1].json()["messages"]] == ["Be thorough.", MESSAGES[0]["content"]]
    assert gw.post(DET).headers["x-gateway-cache"] == "miss"  # no prompt: yet another request


def redis_ttls_ms(store_yaml: str) -> list[int]:
    """The remaining TTLs (ms, ascending) of every entry in the test's Redis namespace."""
    ns = store_yaml.split("namespace: ")[1].split()[0]
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return sorted(client.pttl(k) for k in client.scan_iter(f"llm-gateway:cache:{ns}:*"))
    finally:
        client.close()


def test_ttl_expiry_and_ttl_header(cache_gateway, upstream, store_yaml):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\nttl_s: 5\n{store_yaml}"))
    clock = FakeClock()
    gw.cache.use_clock(clock)
    upstream.json(CHAT)
    assert gw.post(DET).headers["x-gateway-cache"] == "miss"
    until_stored(gw)
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"
    # A per-request TTL outlives the default one.
    other = {**DET, "max_tokens": 3}
    assert gw.post(other, {"x-gateway-cache-ttl": "30"}).headers["x-gateway-cache"] == "miss"
    until_stored(gw)
    if gw.cache.store.kind == "redis":  # Redis expires keys on its own clock: check the TTLs it holds
        default, longer = redis_ttls_ms(store_yaml)
        assert 0 < default <= 5000 < longer <= 30000
    else:
        clock.advance(6)
        assert gw.post(DET).headers["x-gateway-cache"] == "miss"  # expired
        assert gw.post(other).headers["x-gateway-cache"] == "hit"
    # TTL 0: not stored at all.
    third = {**DET, "max_tokens": 4}
    assert gw.post(third, {"x-gateway-cache-ttl": "0"}).headers["x-gateway-cache"] == "miss"
    until_stored(gw)
    assert gw.post(third).headers["x-gateway-cache"] == "miss"


def test_max_ttl_caps_the_ttl_header(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true\nttl_s: 60\nmax_ttl_s: 5"))
    clock = FakeClock()
    gw.cache.use_clock(clock)
    upstream.json(CHAT)
    gw.post(DET, {"x-gateway-cache-ttl": "3600"})
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"
    clock.advance(4)
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"
    clock.advance(2)
    assert gw.post(DET).headers["x-gateway-cache"] == "miss"


def test_cache_control_no_cache_no_store_max_age(cache_gateway, upstream, store_yaml):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    clock = FakeClock()
    gw.cache.use_clock(clock)
    upstream.json(CHAT)

    def status(body, cc=None):
        r = gw.post(body, {"Cache-Control": cc} if cc else None)
        assert r.status_code == 200
        until_stored(gw)
        return r.headers["x-gateway-cache"], r.json()["id"]

    # no-store: neither looked up nor stored.
    assert status(DET, "no-store") == ("bypass", "chatcmpl-j")
    assert status(DET)[0] == "miss"
    assert status(DET)[0] == "hit"
    # no-cache: the lookup is skipped and the fresh answer replaces the entry.
    upstream.json({**CHAT, "id": "chatcmpl-fresh"})
    assert status(DET, "no-cache") == ("bypass", "chatcmpl-fresh")
    assert status(DET) == ("hit", "chatcmpl-fresh")
    # max-age: only entries at most that old.
    clock.advance(1.1)
    assert status(DET, "max-age=30") == ("hit", "chatcmpl-fresh")
    upstream.json({**CHAT, "id": "chatcmpl-newer"})
    assert status(DET, "max-age=0") == ("miss", "chatcmpl-newer")
    assert status(DET, "max-stale=5, max-age=60") == ("hit", "chatcmpl-newer")
    assert len(upstream.received) == 4


# --- what is (not) stored ------------------------------------------------------------
def test_errors_and_answers_without_finish_reason_are_not_stored(cache_gateway, upstream, store_yaml):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    bad = {"error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": None}}
    upstream.json(bad, status=400, times=1)
    assert gw.post(DET).status_code == 400
    until_stored(gw)
    unfinished = {**CHAT, "choices": [{**CHAT["choices"][0], "finish_reason": None}]}
    upstream.json(unfinished, times=1)
    assert gw.post(DET).headers["x-gateway-cache"] == "miss"
    until_stored(gw)
    upstream.json(CHAT)
    assert gw.post(DET).headers["x-gateway-cache"] == "miss"
    until_stored(gw)
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"
    assert len(upstream.received) == 3
    assert gw.cache.stats.not_stored == 2


def test_truncated_stream_is_not_stored(cache_gateway, upstream, store_yaml):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    events = stream_events()
    upstream.sse(events, abort_after=5, times=1)  # the upstream dies mid-stream
    r, cut = gw.stream(DET)
    assert b'"error"' in cut and b"[DONE]" not in cut
    until_stored(gw)
    upstream.sse(events[:-3], times=1)  # a clean end before the finish reason, the usage and [DONE]
    r, cut = gw.stream(DET)
    assert r.headers["x-gateway-cache"] == "miss" and b"stream_truncated" in cut
    until_stored(gw)
    upstream.sse(events)
    r, whole = gw.stream(DET)
    assert r.headers["x-gateway-cache"] == "miss" and whole.endswith(b"data: [DONE]\n\n")
    until_stored(gw)
    r, again = gw.stream(DET)
    assert r.headers["x-gateway-cache"] == "hit" and again == whole
    assert len(upstream.received) == 3


def test_entries_over_max_entry_bytes_are_not_stored(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true\nmax_entry_bytes: 300"))
    upstream.json(CHAT)
    assert [gw.post(DET).headers["x-gateway-cache"] for _ in range(2)] == ["miss", "miss"]


def test_embeddings_are_cached(cache_gateway, upstream, store_yaml):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    upstream.json({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                   "model": "up-model", "usage": {"prompt_tokens": 2, "total_tokens": 2}})
    client = gw.sdk()
    first = client.embeddings.with_raw_response.create(model="gpt-test", input="hello")
    until_stored(gw)
    second = client.embeddings.with_raw_response.create(model="gpt-test", input="hello")
    assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit")
    assert second.parse().data[0].embedding == [0.1, 0.2]
    assert client.embeddings.with_raw_response.create(
        model="gpt-test", input="other").headers["x-gateway-cache"] == "miss"


@pytest.mark.parametrize("first_wants_usage", [False, True])
def test_stream_replay_is_byte_identical(cache_gateway, upstream, store_yaml, first_wants_usage):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    events = stream_events()
    upstream.sse(events, chunk_delay_s=0.002)
    with_usage = {**DET, "stream_options": {"include_usage": True}}
    direct_plain, direct_usage = _strip_usage(events), b"".join(events)
    first_body = with_usage if first_wants_usage else DET
    r, original = gw.stream(first_body)
    assert r.headers["x-gateway-cache"] == "miss"
    assert original == (direct_usage if first_wants_usage else direct_plain)
    until_stored(gw)
    r, replay = gw.stream(first_body)
    assert r.headers["x-gateway-cache"] == "hit" and r.headers["content-type"].startswith("text/event-stream")
    assert replay == original  # event for event, byte for byte (ids and all)
    # The other include_usage choice gets the usage chunk added or removed.
    r, other = gw.stream(DET if first_wants_usage else with_usage)
    assert r.headers["x-gateway-cache"] == "hit"
    if first_wants_usage:
        assert other == direct_plain  # exactly what a direct call without usage relays
    else:
        # the usage chunk is rebuilt from the recorded usage; only the "usage":null members are absent
        assert other == direct_plain.replace(b"data: [DONE]", events[-2] + b"data: [DONE]")
    assert len(upstream.received) == 1
    # and the SDK reads the replay like the original
    stream = gw.sdk().chat.completions.create(**DET, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The answer is 42 é"
    assert chunks[-1].usage.total_tokens == 16


def test_stored_stream_serves_a_json_request(cache_gateway, upstream, store_yaml):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    upstream.sse(stream_events())
    gw.stream(DET)
    until_stored(gw)
    raw = gw.sdk().chat.completions.with_raw_response.create(**DET)
    assert raw.headers["x-gateway-cache"] == "hit"
    resp = raw.parse()
    choice = resp.choices[0]
    assert resp.id == "chatcmpl-s" and resp.object == "chat.completion" and resp.system_fingerprint == "fp_1"
    assert choice.message.content == "The answer is 42 é"
    assert choice.message.model_extra["reasoning_content"] == "Let me think."
    call = choice.message.tool_calls[0]
    assert (call.id, call.type, call.function.name, call.function.arguments) == (
        "call_1", "function", "lookup", '{"q":"x"}')
    assert choice.finish_reason == "tool_calls"
    assert resp.usage.total_tokens == 16 and resp.usage.completion_tokens_details.reasoning_tokens == 3
    assert len(upstream.received) == 1


def test_stored_json_serves_a_streamed_request(cache_gateway, upstream, store_yaml):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    answer = {**CHAT, "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": "Calling", "reasoning_content": "hmm",
        "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]}
    upstream.json(answer)
    gw.post(DET)
    until_stored(gw)
    client = gw.sdk()
    chunks = list(client.chat.completions.create(**DET, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Calling"
    assert chunks[0].choices[0].delta.model_extra["reasoning_content"] == "hmm"
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or ())]
    assert calls[0].index == 0 and calls[0].id == "call_9" and calls[0].function.arguments == "{}"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert all(c.usage is None for c in chunks)
    with_usage = list(client.chat.completions.create(**DET, stream=True, stream_options={"include_usage": True}))
    assert with_usage[-1].usage.total_tokens == 7 and with_usage[-1].choices == []
    assert len(upstream.received) == 1


def test_text_completions_stream_and_json(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    base = {"id": "cmpl-1", "object": "text_completion", "created": 3, "model": "up-model"}
    events = [sse_event({**base, "choices": [{"index": 0, "text": "Hel", "logprobs": None, "finish_reason": None}]}),
              sse_event({**base, "choices": [{"index": 0, "text": "lo", "logprobs": None, "finish_reason": "stop"}]}),
              sse_event({**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2,
                                                          "total_tokens": 3}}),
              b"data: [DONE]\n\n"]
    upstream.sse(events)
    client = gw.sdk()
    first = "".join(c.choices[0].text for c in client.completions.create(
        model="gpt-test", prompt="x", temperature=0, stream=True) if c.choices)
    until_stored(gw)
    raw = client.completions.with_raw_response.create(model="gpt-test", prompt="x", temperature=0)
    assert first == "Hello" and raw.headers["x-gateway-cache"] == "hit"
    resp = raw.parse()
    assert resp.choices[0].text == "Hello" and resp.choices[0].finish_reason == "stop"
    assert resp.usage.total_tokens == 3


def test_hit_is_logged_with_saved_time_and_no_tokens(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.sse(stream_events(), chunk_delay_s=0.01)
    gw.stream(DET)
    gw.stream(DET)
    miss, hit = gw.wait_records(2)[:2]
    assert miss.cache_status == "miss" and hit.cache_status == "hit"
    assert hit.cache_saved_ms >= 50 and hit.usage.completion_tokens is None and hit.finish_reason == "tool_calls"
    assert hit.stream and hit.status_code == 200 and not hit.truncated


def test_telemetry_rows_of_a_miss_and_a_hit(cache_gateway, upstream):
    from gateway.config.telemetry import PricingSettings
    from gateway.core.pricing import PriceTable
    from gateway.core.tokens import TokenCounter
    from gateway.telemetry.record import REQUEST_COLUMN_NAMES, RowBuilder

    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.json(CHAT, delay_s=0.05)
    gw.post(DET)
    gw.post(DET)
    builder = RowBuilder(config_hash="x", instance="test", tokens=TokenCounter(),
                         prices=PriceTable(PricingSettings(models={"up-model": {"input": 1.0, "output": 2.0}})))
    miss, hit = (dict(zip(REQUEST_COLUMN_NAMES, builder.request_row(c))) for c in gw.wait_records(2)[:2])
    assert (miss["cache_status"], hit["cache_status"]) == ("miss", "hit")
    assert miss["total_tokens"] == 7 and miss["cost_usd"] > 0
    assert hit["total_tokens"] == 0 and hit["cost_usd"] == 0 and hit["upstream_latency_ms"] is None
    assert hit["status_code"] == 200 and hit["finish_reason"] == "stop" and not hit["error_type"]
    assert hit["latency_ms"] < miss["latency_ms"]


@pytest.mark.parametrize("first_wants_usage", [False, True])
def test_stream_that_ends_cleanly_without_done_is_stored(cache_gateway, upstream, store_yaml, first_wants_usage):
    # Complete by the tee's rule (every choice finished, usage came): stored and replayed as sent.
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    events = stream_events()[:-1]  # no data: [DONE]
    upstream.sse(events, times=1)
    with_usage = {**DET, "stream_options": {"include_usage": True}}
    r, original = gw.stream(with_usage if first_wants_usage else DET)
    assert r.headers["x-gateway-cache"] == "miss" and b"error" not in original
    assert original == (b"".join(events) if first_wants_usage else _strip_usage(events))
    until_stored(gw)
    r, replay = gw.stream(with_usage if first_wants_usage else DET)
    assert r.headers["x-gateway-cache"] == "hit" and replay == original
    # The other include_usage choice: the SDK reads a whole answer, its usage included when asked.
    stream = gw.sdk().chat.completions.create(**DET, stream=True,
                                              stream_options={"include_usage": not first_wants_usage})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The answer is 42 é"
    assert (chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 16) is not first_wants_usage
    assert gw.sdk().chat.completions.create(**DET).choices[0].finish_reason == "tool_calls"
    assert len(upstream.received) == 1


def test_an_upload_is_never_cached_by_its_text_fields(cache_gateway, upstream):
    # A form's key would be its text fields only: two different files would share an entry. The
    # cached endpoints read only JSON: a form there is refused before the cache sees it.
    key = f"sk-gw-up-{uuid.uuid4().hex}"
    gw = cache_gateway(cache_config(upstream.url, "enabled: true", extra=(
        f"keys:\n  - {{tenant: t, sha256: {hashlib.sha256(key.encode()).hexdigest()}}}")))
    for i in range(2):
        r = httpx.post(f"{gw.url}/v1/embeddings", headers={"Authorization": f"Bearer {key}"},
                       data={"model": "gpt-test"}, files={"input": ("a.txt", f"text {i}".encode(), "text/plain")})
        assert r.status_code == 400 and "x-gateway-cache" not in r.headers
    assert not upstream.received
