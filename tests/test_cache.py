"""Cache behaviour through real HTTP: keys, tenants, TTL, Cache-Control, stream replay, storing rules.

Every behaviour test runs against both stores: the in-process memory LRU and the real Redis
on 127.0.0.1:6379 (a namespace of its own per test, deleted afterwards). The helpers here
(``cache_config``, ``start_gateway``, ``store_yaml``, the scripted answers) are shared by the
other ``test_cache_*`` modules.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import httpx
import openai
import orjson
import pytest
import redis

from gateway.app import FINISHERS, RUNTIME, build_app
from gateway.cache import CACHE, CacheStage
from gateway.config import parse_config
from gateway.server import BackgroundServer
from tests.fake_clock import FakeClock
from tests.fake_upstream import FakeUpstream, sse_event
from tests.polling import wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"
USAGE = {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16,
         "completion_tokens_details": {"reasoning_tokens": 3}}
CHAT = {"id": "chatcmpl-j", "object": "chat.completion", "created": 11, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Cached words", "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}, "system_fingerprint": "fp_j"}
MESSAGES = [{"role": "user", "content": "What is the answer?"}]
DET = {"model": "gpt-test", "messages": MESSAGES, "temperature": 0}


def _chunk(choices, usage="null") -> dict:
    out = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 7, "model": "up-model",
           "system_fingerprint": "fp_1", "choices": choices}
    out["usage"] = None if usage == "null" else usage
    return out


def _delta(delta, finish=None) -> list:
    return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]


def stream_events() -> list[bytes]:
    """What an OpenAI-style upstream streams when asked for usage: reasoning, content, a tool
    call in pieces, a keep-alive comment, the finish reason, the usage chunk, ``[DONE]``."""
    return [
        sse_event(_chunk(_delta({"role": "assistant", "content": ""}))),
        sse_event(_chunk(_delta({"reasoning_content": "Let me "}))),
        sse_event(_chunk(_delta({"reasoning_content": "think."}))),
        b": keep-alive\n\n",
        sse_event(_chunk(_delta({"content": "The answer "}))),
        sse_event(_chunk(_delta({"content": "is 42 é"}))),
        sse_event(_chunk(_delta({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                  "function": {"name": "lookup", "arguments": ""}}]}))),
        sse_event(_chunk(_delta({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":"}}]}))),
        sse_event(_chunk(_delta({"tool_calls": [{"index": 0, "function": {"arguments": "\"x\"}"}}]}))),
        sse_event(_chunk(_delta({}, "tool_calls"))),
        sse_event({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 7, "model": "up-model",
                   "system_fingerprint": "fp_1", "choices": [], "usage": USAGE}),
        b"data: [DONE]\n\n",
    ]


def cache_config(upstream_url: str, cache: str = "enabled: true", models_extra: str = "", extra: str = "") -> str:
    """A gateway config: backend ``fake``, model ``gpt-test`` (→ ``up-model``), telemetry off,
    and the given ``cache:`` body (YAML lines, unindented)."""
    body = "\n".join("  " + line for line in cache.strip().splitlines())
    return f"""
telemetry: {{enabled: false}}
backends:
  fake: {{type: openai, base_url: "{upstream_url}", api_key: sk-backend}}
models:
  gpt-test:
    targets: [{{backend: fake, model: up-model}}]
{models_extra}
cache:
{body}
{extra}
"""


@dataclass
class Gateway:
    server: BackgroundServer
    records: list  # every finished RequestContext, in order
    cache: CacheStage

    @property
    def url(self) -> str:
        return self.server.url

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="sk-client", max_retries=0)

    def async_sdk(self, **kw) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="sk-client", max_retries=0, **kw)

    def post(self, body: dict, headers: dict | None = None, path: str = "chat/completions") -> httpx.Response:
        return httpx.post(f"{self.url}/v1/{path}", json=body, headers=headers or {}, timeout=30)

    def stream(self, body: dict, headers: dict | None = None) -> tuple[httpx.Response, bytes]:
        with httpx.stream("POST", f"{self.url}/v1/chat/completions", json={**body, "stream": True},
                          headers=headers or {}, timeout=30) as r:
            return r, b"".join(r.iter_bytes())

    def wait_records(self, n: int) -> list:
        """The finished requests' contexts, once there are at least ``n``."""
        wait_for(lambda: len(self.records) >= n, interval=0.005, what=f"{n} finished requests")
        return self.records


@pytest.fixture
def _redis_cleanup():
    """Namespaces to delete from the shared Redis at the end, after every gateway has stopped
    (a gateway's last writes land when it shuts down)."""
    namespaces: list[str] = []
    yield namespaces
    if namespaces:
        client = redis.Redis.from_url(REDIS_URL)
        for ns in namespaces:
            keys = list(client.scan_iter(f"llm-gateway:cache:{ns}:*"))
            if keys:
                client.delete(*keys)
        client.close()


@pytest.fixture
def start_gateway(_redis_cleanup):
    """``start_gateway(yaml) -> Gateway``."""
    servers = []

    def factory(yaml_text: str, base_dir=None) -> Gateway:
        app = build_app(parse_config(yaml_text, base_dir=base_dir))
        records: list = []
        app[FINISHERS].append(records.append)
        server = BackgroundServer(app)
        server.__enter__()
        servers.append(server)
        return Gateway(server, records, app[CACHE])

    yield factory
    for server in servers:
        server.__exit__(None, None, None)


def redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379 (.ci/run starts one)")
    return client


@pytest.fixture
def redis_namespace(_redis_cleanup):
    """A fresh namespace on the shared Redis; its keys are deleted at the end."""
    redis_or_skip().close()
    ns = f"test-{uuid.uuid4().hex[:12]}"
    _redis_cleanup.append(ns)
    return ns


@pytest.fixture(params=["memory", "redis"])
def store_yaml(request) -> str:
    """``cache:`` lines selecting each store in turn (Redis: a namespace of its own)."""
    if request.param == "memory":
        return f"store: memory\nnamespace: test-{uuid.uuid4().hex[:8]}"
    ns = request.getfixturevalue("redis_namespace")
    return f"store: redis\nredis_url: {REDIS_URL}\nnamespace: {ns}"


@pytest.fixture
def upstream2():
    with FakeUpstream() as fake:
        yield fake


def until_stored(gw: Gateway) -> None:
    """Redis writes happen after the response: wait until no write is pending."""
    wait_for(lambda: not (gw.cache.flights or gw.cache._tasks), interval=0.005, what="pending cache writes")


# --- hits and misses -----------------------------------------------------------------
def test_json_miss_then_hit(start_gateway, upstream, store_yaml):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
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


def test_key_covers_output_fields_and_ignores_transport_fields(start_gateway, upstream, store_yaml):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
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


def test_only_deterministic_requests_by_default(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.json(CHAT)
    body = {"model": "gpt-test", "messages": MESSAGES}  # default temperature: not deterministic
    assert [gw.post(body).headers["x-gateway-cache"] for _ in range(2)] == ["bypass", "bypass"]
    hot = {**body, "temperature": 0.7}
    assert [gw.post(hot).headers["x-gateway-cache"] for _ in range(2)] == ["bypass", "bypass"]
    seeded = {**hot, "seed": 42}
    assert [gw.post(seeded).headers["x-gateway-cache"] for _ in range(2)] == ["miss", "hit"]
    assert len(upstream.received) == 5
    assert gw.wait_records(6)[0].cache_status == "bypass"


def test_per_model_overrides(start_gateway, upstream):
    models = """
  always-model:
    targets: [{backend: fake, model: up-model}]
    cache: {enabled: true, mode: always}
  no-cache-model:
    targets: [{backend: fake, model: up-model}]
    cache: {enabled: false}
"""
    gw = start_gateway(cache_config(upstream.url, "enabled: true", models_extra=models))
    upstream.json(CHAT)
    free = {"messages": MESSAGES, "temperature": 1.3}
    assert [gw.post({**free, "model": "always-model"}).headers["x-gateway-cache"] for _ in range(2)] == [
        "miss", "hit"]
    r = gw.post({**DET, "model": "no-cache-model"})
    assert r.status_code == 200 and "x-gateway-cache" not in r.headers
    # The same body for another public model is another entry.
    assert gw.post({**DET, "model": "always-model"}).headers["x-gateway-cache"] == "miss"


def test_model_can_opt_in_while_the_default_is_off(start_gateway, upstream):
    models = """
  opted-in:
    targets: [{backend: fake, model: up-model}]
    cache: {enabled: true}
"""
    gw = start_gateway(cache_config(upstream.url, "enabled: false", models_extra=models))
    upstream.json(CHAT)
    r = gw.post(DET)
    assert r.status_code == 200 and "x-gateway-cache" not in r.headers
    assert [gw.post({**DET, "model": "opted-in"}).headers["x-gateway-cache"] for _ in range(2)] == ["miss", "hit"]


def test_cache_off_everywhere_adds_nothing(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: false"))
    upstream.json(CHAT)
    for _ in range(2):
        r = gw.post(DET)
        assert r.status_code == 200 and "x-gateway-cache" not in r.headers
    assert gw.cache.store is None  # no store was even created
    assert gw.cache not in gw.server.app[RUNTIME].current.stages  # nor a stage: requests never meet it
    assert len(upstream.received) == 2
    assert gw.wait_records(2)[0].cache_status == "none"


def test_tenants_of_real_virtual_keys_never_share_entries(start_gateway, upstream, store_yaml):
    keys = {name: f"sk-gw-{name}-{uuid.uuid4().hex}" for name in ("acme1", "acme2", "globex")}
    entries = "\n".join(f"  - {{tenant: {name[:-1] if name.startswith('acme') else name}, id: {name}, "
                        f"sha256: {hashlib.sha256(k.encode()).hexdigest()}}}" for name, k in keys.items())
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}", extra=f"keys:\n{entries}"))
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


def test_key_is_computed_after_prompt_injection(start_gateway, upstream, tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "bot.yaml").write_text("""
versions:
  - version: 1
    messages: [{role: system, content: "Be brief."}]
  - version: 2
    messages: [{role: system, content: "Be thorough."}]
labels: {production: 1, staging: 2}
""")
    gw = start_gateway(cache_config(upstream.url, "enabled: true", extra="prompts: {dir: prompts}"),
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


def test_ttl_expiry_and_ttl_header(start_gateway, upstream, store_yaml):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\nttl_s: 5\n{store_yaml}"))
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


def test_max_ttl_caps_the_ttl_header(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true\nttl_s: 60\nmax_ttl_s: 5"))
    clock = FakeClock()
    gw.cache.use_clock(clock)
    upstream.json(CHAT)
    gw.post(DET, {"x-gateway-cache-ttl": "3600"})
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"
    clock.advance(4)
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"
    clock.advance(2)
    assert gw.post(DET).headers["x-gateway-cache"] == "miss"


def test_cache_control_no_cache_no_store_max_age(start_gateway, upstream, store_yaml):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
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
def test_errors_and_answers_without_finish_reason_are_not_stored(start_gateway, upstream, store_yaml):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
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


def test_truncated_stream_is_not_stored(start_gateway, upstream, store_yaml):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    events = stream_events()
    upstream.sse(events, abort_after=5, times=1)  # the upstream dies mid-stream
    r, cut = gw.stream(DET)
    assert b'"error"' in cut and b"[DONE]" not in cut
    until_stored(gw)
    upstream.sse(events[:-1], times=1)  # no [DONE]
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


def test_entries_over_max_entry_bytes_are_not_stored(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true\nmax_entry_bytes: 300"))
    upstream.json(CHAT)
    assert [gw.post(DET).headers["x-gateway-cache"] for _ in range(2)] == ["miss", "miss"]


def test_embeddings_are_cached(start_gateway, upstream, store_yaml):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
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


# --- streams -------------------------------------------------------------------------
def _strip_usage(events: list[bytes]) -> bytes:
    """What the gateway relays to a client that did not ask for usage."""
    return b"".join(e.replace(b',"usage":null', b"") for e in events if b'"choices":[],"usage":{' not in e)


@pytest.mark.parametrize("first_wants_usage", [False, True])
def test_stream_replay_is_byte_identical(start_gateway, upstream, store_yaml, first_wants_usage):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
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


def test_stored_stream_serves_a_json_request(start_gateway, upstream, store_yaml):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
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


def test_stored_json_serves_a_streamed_request(start_gateway, upstream, store_yaml):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
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


def test_text_completions_stream_and_json(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
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


def test_hit_is_logged_with_saved_time_and_no_tokens(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.sse(stream_events(), chunk_delay_s=0.01)
    gw.stream(DET)
    gw.stream(DET)
    miss, hit = gw.wait_records(2)[:2]
    assert miss.cache_status == "miss" and hit.cache_status == "hit"
    assert hit.cache_saved_ms >= 50 and hit.usage.completion_tokens is None and hit.finish_reason == "tool_calls"
    assert hit.stream and hit.status_code == 200 and not hit.truncated


def test_telemetry_rows_of_a_miss_and_a_hit(start_gateway, upstream):
    from gateway.config.telemetry import PricingSettings
    from gateway.pricing import PriceTable
    from gateway.telemetry.record import REQUEST_COLUMN_NAMES, RowBuilder
    from gateway.tokens import TokenCounter

    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
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
