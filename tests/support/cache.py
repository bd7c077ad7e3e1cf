"""A cache config, a gateway factory with a cache store, and Redis namespaces shared by the cache tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import openai
import pytest
import redis

from gateway.app import FINISHERS, build_app
from gateway.cache import CACHE, CacheStage
from gateway.config import parse_config
from gateway.proxy.server import BackgroundServer
from tests.support.fake_upstream import sse_event
from tests.support.polling import wait_for

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
def cache_gateway(_redis_cleanup):
    """``cache_gateway(yaml) -> Gateway``."""
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
    # A generous timeout: these tests are about what is stored and served, and a busy machine
    # (a hundred concurrent lookups on the pool) must not turn lookups into bypasses.
    return f"store: redis\nredis_url: {REDIS_URL}\nnamespace: {ns}\nredis_timeout_s: 10"


def until_stored(gw: Gateway) -> None:
    """Redis writes happen after the response: wait until no write is pending."""
    wait_for(lambda: not (gw.cache.flights or gw.cache._tasks), interval=0.005, what="pending cache writes")


# --- streams -------------------------------------------------------------------------
def _strip_usage(events: list[bytes]) -> bytes:
    """What the gateway relays to a client that did not ask for usage."""
    return b"".join(e.replace(b',"usage":null', b"") for e in events if b'"choices":[],"usage":{' not in e)
