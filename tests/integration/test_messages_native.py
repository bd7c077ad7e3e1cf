"""``POST /v1/messages`` to Anthropic backends: relayed natively (the client's body under the
target's model, the backend's own key, the client's ``anthropic-version``/``anthropic-beta``),
answers byte for byte, usage with cache reads and writes in the row; a model whose targets mix
Anthropic and OpenAI-type backends decides per attempt."""

from __future__ import annotations

import random

import anthropic
import httpx
import orjson
import pytest

from tests.support.fake_upstream import FakeUpstream, chat_chunk, named_sse_event, sse_event
from tests.support.telemetry import chdb_dsn, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select

USER = [{"role": "user", "content": "hello there"}]
MODEL = "claude-sonnet-4-20250514"
MESSAGE = {"id": "msg_01", "type": "message", "role": "assistant", "model": MODEL,
           "content": [{"type": "text", "text": "Hi from Claude"}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20,
                     "output_tokens": 5}}
EVENTS = [
    {"type": "message_start", "message": {**MESSAGE, "content": [], "stop_reason": None,
                                          "usage": {**MESSAGE["usage"], "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi from "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Claude ✓"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 7}},
    {"type": "message_stop"},
]
STREAM = [named_sse_event(e) for e in EVENTS]


def config(anthropic_url: str, openai_url: str = "http://127.0.0.1:9/v1", extra: str = "") -> str:
    return f"""
backends:
  claude: {{type: anthropic, base_url: "{anthropic_url}", api_key: sk-ant-backend}}
  oai: {{type: openai, base_url: "{openai_url}", api_key: sk-oai-backend}}
models:
  claude: {{targets: [{{backend: claude, model: {MODEL}}}]}}
  gpt: {{targets: [{{backend: oai, model: gpt-4o}}]}}
  mixed:
    targets: [{{backend: claude, model: {MODEL}}}, {{backend: oai, model: gpt-up}}]
    fallback_on: [connect, timeout, 5xx]
routing:
  retry: {{attempts: 1}}
{extra}"""


def client(gw, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="client-key", max_retries=0, **kw)


def test_json_relayed_natively(upstream, make_gateway):
    gw = make_gateway(config(upstream.url))
    upstream.json(MESSAGE)
    r = httpx.post(f"{gw.url}/v1/messages", timeout=30, headers={
        "x-api-key": "client-key", "anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31",
        "content-type": "application/json"},
        content=b'{"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], "top_k": 3}')
    assert r.status_code == 200 and r.content == orjson.dumps(MESSAGE)  # the backend's bytes
    sent = upstream.last
    assert sent.path == "/v1/messages"
    assert sent.json() == {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}],
                           "top_k": 3}
    assert sent.headers["x-api-key"] == "sk-ant-backend" and "Authorization" not in sent.headers
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "client-key" not in str(sent.headers)

    message = client(gw).messages.create(model="claude", max_tokens=64, messages=USER)
    assert message.content[0].text == "Hi from Claude"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (10, 100)


@pytest.mark.parametrize("seed", [None, 7, 8])
def test_stream_relayed_natively(upstream, make_gateway, seed):
    gw = make_gateway(config(upstream.url))
    data = b"".join(STREAM)
    if seed is None:
        upstream.sse(STREAM)
    else:
        cuts = sorted(random.Random(seed).sample(range(1, len(data)), 15))
        upstream.sse([data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)])
    with httpx.stream("POST", f"{gw.url}/v1/messages", timeout=30, headers={"x-api-key": "k"},
                      json={"model": "claude", "max_tokens": 64, "messages": USER, "stream": True}) as r:
        relayed = b"".join(r.iter_bytes())
    assert relayed == data
    upstream.sse(STREAM)
    with client(gw).messages.stream(model="claude", max_tokens=64, messages=USER) as stream:
        assert "".join(stream.text_stream) == "Hi from Claude ✓"
        final = stream.get_final_message()
    assert final.usage.output_tokens == 7 and final.usage.cache_creation_input_tokens == 20


def test_errors_relayed_in_anthropic_shape(upstream, make_gateway):
    gw = make_gateway(config(upstream.url))
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.json(overloaded, status=529)
    with pytest.raises(anthropic.APIStatusError) as info:
        client(gw).messages.create(model="claude", max_tokens=64, messages=USER)
    assert info.value.status_code == 529 and info.value.body == overloaded
    upstream.sse(STREAM[:3] + [named_sse_event({"type": "error", "error": {"type": "overloaded_error",
                                                                           "message": "Overloaded"}})])
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with client(gw).messages.stream(model="claude", max_tokens=64, messages=USER) as stream:
            stream.get_final_message()


def test_mixed_targets_decide_per_attempt(make_gateway):
    with FakeUpstream() as claude, FakeUpstream() as oai:
        gw = make_gateway(config(claude.url, oai.url))
        claude.json({"type": "error", "error": {"type": "api_error", "message": "down"}}, status=500)
        oai.sse([sse_event(chat_chunk("From GPT")), sse_event(chat_chunk(finish="stop")),
                 sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 3, "completion_tokens": 2,
                                                            "total_tokens": 5})), b"data: [DONE]\n\n"])
        with client(gw).messages.stream(model="mixed", max_tokens=64, messages=USER) as stream:
            final = stream.get_final_message()
        assert final.content[0].text == "From GPT" and final.usage.output_tokens == 2
        assert claude.last.path == "/v1/messages" and claude.last.json()["model"] == MODEL
        assert oai.last.path == "/v1/chat/completions" and oai.last.json()["model"] == "gpt-up"
        assert oai.last.headers["Authorization"] == "Bearer sk-oai-backend"
        assert "anthropic-beta" not in oai.last.headers


def test_rows_have_cache_tokens_ttft_and_cost(upstream, make_gateway, tmp_path, tdb):  # noqa: F811
    gw = make_gateway(config(upstream.url, extra=telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")))
    upstream.json(MESSAGE)
    client(gw).messages.create(model="claude", max_tokens=64, messages=USER)
    upstream.sse(STREAM)
    with client(gw).messages.stream(model="claude", max_tokens=64, messages=USER) as stream:
        stream.get_final_message()
    flush(gw)
    rows = select(tdb, "SELECT stream, backend, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, "
                       "cost_usd, ttft_ms, finish_reason, model_served FROM llm_requests ORDER BY ts_start")
    assert [(r["stream"], r["backend"], r["model_served"]) for r in rows] == [(0, "claude", MODEL), (1, "claude", MODEL)]
    for row, output in zip(rows, (5, 7), strict=True):
        assert (row["prompt_tokens"], row["completion_tokens"]) == (130, output)
        assert (row["cached_tokens"], row["cache_write_tokens"]) == (100, 20)
        assert row["cost_usd"] is not None and row["cost_usd"] > 0
        assert row["finish_reason"] == "stop" and row["ttft_ms"] is not None



def test_count_tokens_native_and_counted_for_chat_backends(make_gateway):
    with FakeUpstream() as claude, FakeUpstream() as oai:
        gw = make_gateway(config(claude.url, oai.url))
        claude.json({"input_tokens": 42})
        c = client(gw)
        assert c.messages.count_tokens(model="claude", messages=USER, system="Be brief.").input_tokens == 42
        assert claude.last.path == "/v1/messages/count_tokens"
        assert claude.last.json() == {"model": MODEL, "messages": USER, "system": "Be brief."}
        assert claude.last.headers["x-api-key"] == "sk-ant-backend"
        # A chat backend is not asked: the gateway counts (tiktoken, the chat form of the request).
        short = c.messages.count_tokens(model="gpt", messages=USER).input_tokens
        longer = c.messages.count_tokens(model="gpt", messages=USER, system="Be brief and kind.",
                                         tools=[{"name": "f", "input_schema": {"type": "object"}}]).input_tokens
        assert short == 3 + 3 + 1 + 2  # the primed reply, one message, its role "user", "hello there"
        assert longer > short
        assert oai.received == []
        with pytest.raises(anthropic.BadRequestError):
            c.messages.count_tokens(model="gpt", messages=[{"role": "robot", "content": "x"}])  # type: ignore[typeddict-item]
