"""Cache pieces without HTTP: keys and policy, Cache-Control, conversions, entries, the memory LRU, config."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from multidict import CIMultiDict

from gateway.cache.convert import UsageView, assemble_json, convert_stream, synthesize_sse, usage_dict
from gateway.cache.entry import ENTRY_OVERHEAD, JSON, SSE, CacheEntry
from gateway.cache.policy import CachePolicy, RequestControl
from gateway.cache.stores import CacheStats, MemoryStore
from gateway.config import ConfigError, parse_config
from gateway.core.context import Usage
from gateway.core.sse import DONE_EVENT, encode_data_event
from tests.support.cache import stream_events


def policy_of(yaml_tail: str = "cache: {enabled: true}") -> CachePolicy:
    return CachePolicy(parse_config(f"""
backends: {{fake: {{type: mock}}}}
models:
  m: {{targets: [{{backend: fake}}]}}
{yaml_tail}
""").config)


def key(policy: CachePolicy, body: dict, tenant: str = "", headers=None, metadata=None, api_key_id: str = "",
        stream: bool = False, endpoint: str = "chat/completions") -> str:
    return policy.key(endpoint, body, tenant, CIMultiDict(headers or {}), metadata, api_key_id, stream)


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


# --- keys and policy -----------------------------------------------------------------
def test_key_shape_stability_and_sensitivity():
    p = policy_of()
    k = key(p, BODY)
    assert k.startswith("llm-gateway:cache:v1:") and len(k.rsplit(":", 1)[1]) == 64
    assert key(p, dict(reversed(list(BODY.items())))) == k
    assert key(p, {**BODY, "temperature": 0.0}) == k
    assert key(p, {**BODY, "stream": True, "stream_options": {"include_usage": True}, "user": "u",
                   "metadata": {"a": "b"}}, stream=True) == k
    assert key(p, {**BODY, "messages": [{"content": "hi", "role": "user"}]}) == k  # nested keys sorted too
    assert key(p, {**BODY, "max_tokens": 1}) != k
    assert key(p, {**BODY, "unknown_field": None}) != k
    assert key(p, BODY, tenant="t1") != k and key(p, BODY, tenant="t1") != key(p, BODY, tenant="t2")
    assert key(p, BODY, endpoint="completions") != k
    assert key(policy_of("cache: {enabled: true, namespace: v2}"), BODY) != k
    # headers do not matter unless configured or used by routing rules
    assert key(p, BODY, headers={"x-tier": "gold"}) == k


def test_key_varies_on_what_routing_rules_look_at():
    p = policy_of("""
cache: {enabled: true, vary_headers: [X-Team]}
routes:
  - {name: beta, match: {headers: {x-beta: "1"}}, strategy: weighted}
  - {name: meta, match: {metadata: {tier: gold}}, strategy: weighted}
  - {name: streams, match: {stream: true}, strategy: weighted}
""")
    base = key(p, BODY)
    assert p.vary_headers == ("x-beta", "x-team") and p.vary_metadata == ("tier",) and p.vary_stream
    assert key(p, BODY, headers={"X-Beta": "1"}) != base
    assert key(p, BODY, headers={"x-team": "a"}) != key(p, BODY, headers={"x-team": "b"})
    assert key(p, BODY, metadata={"tier": "gold"}) != base
    assert key(p, BODY, stream=True) != base
    assert key(p, BODY, headers={"x-other": "1"}) == base


def test_eligibility_by_mode_endpoint_and_model():
    p = policy_of("""
cache: {enabled: true, endpoints: [chat/completions, embeddings]}
""")
    mp = p.for_model("m")
    assert p.eligible("chat/completions", BODY, mp)
    assert p.eligible("chat/completions", {**BODY, "temperature": 0.5, "seed": 3}, mp)
    assert not p.eligible("chat/completions", {**BODY, "temperature": 0.5}, mp)
    assert not p.eligible("chat/completions", {"model": "m", "messages": []}, mp)
    assert not p.eligible("chat/completions", {**BODY, "temperature": False}, mp)
    assert p.eligible("embeddings", {"model": "m", "input": "x"}, mp)
    assert not p.eligible("completions", BODY, mp)  # endpoint not listed
    assert p.for_model("not-configured") is p.default
    off = policy_of("cache: {enabled: false}")
    assert not off.any_enabled and not off.eligible("chat/completions", BODY, off.for_model("m"))


def test_per_model_override_inherits_unset_fields():
    cfg = parse_config("""
backends: {fake: {type: mock}}
models:
  a: {targets: [{backend: fake}], cache: {ttl_s: 5}}
  b: {targets: [{backend: fake}], cache: {enabled: false}}
  c: {targets: [{backend: fake}], cache: {mode: always}}
cache: {enabled: true, ttl_s: 60}
""").config
    p = CachePolicy(cfg)
    assert (p.for_model("a").enabled, p.for_model("a").ttl_s, p.for_model("a").always) == (True, 5, False)
    assert not p.for_model("b").enabled
    assert (p.for_model("c").ttl_s, p.for_model("c").always) == (60, True)


@pytest.mark.parametrize("headers,expected", [
    ({}, (True, True, None, None)),
    ({"Cache-Control": "no-cache"}, (False, True, None, None)),
    ({"Cache-Control": "no-store"}, (False, False, None, None)),
    ({"Cache-Control": "No-Cache, max-age=30"}, (False, True, 30.0, None)),
    ({"Cache-Control": "max-age=5"}, (True, True, 5.0, None)),
    ({"Cache-Control": "max-age=abc"}, (True, True, None, None)),
    ({"x-gateway-cache-ttl": "90"}, (True, True, None, 90.0)),
    ({"x-gateway-cache-ttl": "0"}, (True, False, None, None)),
    ({"x-gateway-cache-ttl": "soon"}, (True, True, None, None)),
])
def test_request_control(headers, expected):
    c = RequestControl.parse(CIMultiDict(headers))
    assert (c.lookup, c.store, c.max_age, c.ttl_s) == expected


# --- conversions ---------------------------------------------------------------------
def test_usage_dict_round_trip():
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
             "prompt_tokens_details": {"cached_tokens": 1}, "completion_tokens_details": {"reasoning_tokens": 2}}
    assert usage_dict(Usage.from_openai(usage)) == usage
    assert usage_dict(Usage()) is None


def test_usage_view_strips_and_adds():
    events = stream_events()
    full = b"".join(events)
    plain = convert_stream(full, True, False, None)
    assert b'"usage"' not in plain and plain.endswith(DONE_EVENT)
    assert plain.count(b"\n\n") == len(events) - 1  # only the usage chunk went
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    back = convert_stream(plain, False, True, usage)
    last = back.split(b"\n\n")[-3]
    assert orjson.loads(last[6:]) == {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 7,
                                      "model": "up-model", "system_fingerprint": "fp_1", "choices": [],
                                      "usage": usage}
    assert convert_stream(full, True, True, None) is full
    # piece by piece (several events per piece) gives the same
    view = UsageView(True, False, None)
    pieces = [b"".join(events[:3]), b"".join(events[3:8]), b"".join(events[8:])]
    assert b"".join(view.piece(p) for p in pieces) + view.finish() == plain
    assert convert_stream(plain, False, True, None) == plain  # nothing known: nothing added


def test_assemble_json_merges_choices_tool_calls_and_logprobs():
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m"}

    def ev(index, delta, finish=None, logprobs=None):
        return encode_data_event({**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                                       "finish_reason": finish}]})

    lp = lambda tok: {"content": [{"token": tok, "logprob": -0.1, "bytes": None, "top_logprobs": []}]}  # noqa: E731
    stream = b"".join([
        ev(0, {"role": "assistant", "content": ""}), ev(1, {"role": "assistant", "content": ""}),
        ev(0, {"content": "A"}, logprobs=lp("A")), ev(1, {"content": "B"}, logprobs=lp("B")),
        ev(0, {"content": "a"}, logprobs=lp("a")),
        ev(1, {"tool_calls": [{"index": 0, "id": "t0", "type": "function", "function": {"name": "f", "arguments": "{"}},
                              {"index": 1, "id": "t1", "type": "function", "function": {"name": "g", "arguments": ""}}]}),
        ev(1, {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}, {"index": 1, "function": {"arguments": "[]"}}]}),
        ev(0, {}, "length"), ev(1, {}, "tool_calls"), DONE_EVENT])
    out = orjson.loads(assemble_json(stream, "chat/completions", {"prompt_tokens": 1, "completion_tokens": 2,
                                                                   "total_tokens": 3}))
    assert out["object"] == "chat.completion" and out["id"] == "c1" and out["usage"]["total_tokens"] == 3
    first, second = out["choices"]
    assert first["message"] == {"role": "assistant", "content": "Aa"} and first["finish_reason"] == "length"
    assert [t["token"] for t in first["logprobs"]["content"]] == ["A", "a"]
    assert second["message"]["content"] == "B" and second["finish_reason"] == "tool_calls"
    assert second["message"]["tool_calls"] == [
        {"id": "t0", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "t1", "type": "function", "function": {"name": "g", "arguments": "[]"}}]
    with pytest.raises(ValueError):
        assemble_json(DONE_EVENT, "chat/completions", None)


def test_synthesize_sse_round_trips_through_assemble():
    answer = {"id": "x", "object": "chat.completion", "created": 2, "model": "m", "system_fingerprint": "fp",
              "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "hello", "refusal": None,
                                       "reasoning_content": "because",
                                       "tool_calls": [{"id": "t", "type": "function",
                                                       "function": {"name": "f", "arguments": "{}"}}]}}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    body = orjson.dumps(answer)
    stream = synthesize_sse(body, "chat/completions", want_usage=True)
    assert stream.endswith(DONE_EVENT) and b'"choices":[],"usage":{' in stream
    assert b'"usage"' not in synthesize_sse(body, "chat/completions", want_usage=False)
    again = orjson.loads(assemble_json(stream, "chat/completions", None))
    assert again["choices"][0]["message"] == {k: v for k, v in answer["choices"][0]["message"].items()
                                              if v is not None}
    assert again["usage"] == answer["usage"] and again["system_fingerprint"] == "fp"
    with pytest.raises(ValueError):
        synthesize_sse(b'{"data": []}', "embeddings", want_usage=False)


# --- entries and the memory store ----------------------------------------------------
def test_entry_encode_decode():
    e = CacheEntry(SSE, "chat/completions", b"".join(stream_events()), has_usage=True,
                   usage={"total_tokens": 3}, finish_reason="stop", model="m", latency_ms=12.5)
    d = CacheEntry.decode(e.encode())
    assert (d.kind, d.endpoint, d.body, d.has_usage, d.usage, d.finish_reason, d.model, d.created, d.latency_ms) == (
        e.kind, e.endpoint, e.body, e.has_usage, e.usage, e.finish_reason, e.model, e.created, e.latency_ms)
    for bad in (b"", b"LGC1", b"LGC1\x00\x00\x00\x05{bad}", b"nope"):
        with pytest.raises(ValueError):
            CacheEntry.decode(bad)
    assert d.sse_body(True) is d.body
    assert d.sse_body(False) is d.sse_body(False)  # converted once, then remembered


def test_memory_store_lru_by_bytes_and_ttl():
    now = [0.0]
    stats = CacheStats()
    one = 100 + ENTRY_OVERHEAD
    store = MemoryStore(3 * one, stats, clock=lambda: now[0])
    entry = lambda: CacheEntry(JSON, "chat/completions", b"x" * 100)  # noqa: E731
    for k in "abc":
        assert store.set_nowait(k, entry(), ttl_s=10)
    assert store.get_nowait("a") is not None  # a is now the most recently used
    store.set_nowait("d", entry(), ttl_s=10)  # evicts b, the least recently used
    assert store.get_nowait("b") is None and stats.evictions == 1 and len(store) == 3
    assert store.bytes == 3 * one
    store.set_nowait("a", entry(), ttl_s=1)  # replacing does not double count
    assert store.bytes == 3 * one
    now[0] = 5.0
    assert store.get_nowait("a") is None and store.get_nowait("c") is not None  # a expired, c not
    assert store.bytes == 2 * one
    assert not store.set_nowait("huge", CacheEntry(JSON, "x", b"y" * 5000), ttl_s=10)
    asyncio.run(store.close())
    assert len(store) == 0 and store.bytes == 0



def completion(i: int) -> bytes:
    return orjson.dumps({"id": f"chatcmpl-{i}", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {i} " * 20},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49}})


def test_a_form_served_from_an_entry_counts_against_the_memory_bound():
    """A JSON answer replayed to a streaming client keeps its SSE form beside it: the store
    counts it, and makes room for it by evicting the least recently used others."""
    stats = CacheStats()
    first = CacheEntry(JSON, "chat/completions", completion(1))
    store = MemoryStore(3 * first.size, stats)
    for i, key in enumerate("abc", 1):
        store.set_nowait(key, first if i == 1 else CacheEntry(JSON, "chat/completions", completion(i)), ttl_s=60)
    counted = store.bytes
    served = store.get_nowait("a")
    assert served is first
    sse = served.sse_body(False)
    assert first.size == len(first.body) + ENTRY_OVERHEAD + len(sse)
    assert stats.evictions == 1 and store.get_nowait("b") is None  # room made for the form
    assert store.bytes <= store.max_bytes and store.bytes == counted - (len(completion(2)) + ENTRY_OVERHEAD) + len(sse)
    store.clear()
    served.sse_body(True)  # an entry no longer in the store: nothing counted
    assert store.bytes == 0


def test_the_memory_bound_counts_what_entries_really_hold():
    """``max_bytes`` is what a full store holds in memory (measured by tracemalloc), within 15%,
    with answers stored as the cache stage stores them (body bytes, usage dict, 64-hex key)."""
    import gc
    import hashlib
    import tracemalloc

    bound = 2 << 20
    gc.collect()
    tracemalloc.start()
    try:
        store = MemoryStore(bound, CacheStats())
        before = tracemalloc.get_traced_memory()[0]
        for i in range(10_000):
            body = completion(i)
            body = bytes(memoryview(body))  # exact-size bytes, as an upstream read gives
            usage = orjson.loads(b'{"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49}')
            entry = CacheEntry(JSON, "chat/completions", body, usage=usage, finish_reason="stop", model="m")
            store.set_nowait(hashlib.sha256(str(i).encode()).hexdigest(), entry, ttl_s=60)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.bytes <= bound and len(store) < 10_000  # full: it evicted
    assert 0.85 * store.bytes <= held <= 1.15 * store.bytes, (held, store.bytes, len(store))


# --- config ----------------------------------------------------------------------------
@pytest.mark.parametrize("yaml,problem", [
    ("cache: {store: redis}", "redis_url"),
    ("cache: {ttl: 5}", "cache.ttl"),
    ("cache: {mode: sometimes}", "cache.mode"),
    ("cache: {redis_url: 'http://x'}", "redis_url"),
    ("cache: {endpoints: [images]}", "cache.endpoints"),
    ("models: {m: {targets: [{backend: fake}], cache: {enable: true}}}", "models.m.cache.enable"),
])
def test_config_errors_name_their_path(yaml, problem):
    with pytest.raises(ConfigError) as info:
        parse_config(f"backends: {{fake: {{type: mock}}}}\n{yaml}\n")
    assert problem in str(info.value)


def test_redis_url_is_masked_in_the_public_config():
    from gateway.admin.public_config import public_config

    cfg = parse_config("backends: {fake: {type: mock}}\n"
                       "cache: {enabled: true, store: redis, redis_url: 'redis://u:hunter2@h:6379/0'}\n").config
    assert "hunter2" not in repr(cfg.cache)
    assert "hunter2" not in str(public_config(cfg)) and public_config(cfg)["cache"]["store"] == "redis"
