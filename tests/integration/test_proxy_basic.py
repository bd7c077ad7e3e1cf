"""The OpenAI SDK pointed at the gateway: JSON, streams, models, pass-through, headers."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.support.fake_upstream import chat_chunk, sse_event

CHAT_RESPONSE = {
    "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "up-model-2024",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    "system_fingerprint": "fp_x", "service_tier": "default", "vendor_field": {"kept": True},
}


def sdk(gateway, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client-secret", max_retries=0, **kw)


def test_json_chat_is_byte_for_byte_and_model_is_mapped(gateway, upstream):
    upstream.json(CHAT_RESPONSE)
    raw = httpx.post(f"{gateway.url}/v1/chat/completions", json={
        "model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "some_new_param": [1, 2]})
    assert raw.status_code == 200
    import orjson
    assert raw.content == orjson.dumps(CHAT_RESPONSE)
    sent = upstream.last.json()
    assert sent["model"] == "up-model"  # public name → upstream name
    assert sent["some_new_param"] == [1, 2]  # unknown fields pass through untouched
    assert raw.headers["x-gateway-backend"] == "fake"
    assert raw.headers["x-request-id"]


def test_sdk_sync_and_async_chat(gateway, upstream):
    upstream.json(CHAT_RESPONSE)
    resp = sdk(gateway).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "Hello there"
    assert resp.usage.total_tokens == 7

    async def run():
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="sk-x", max_retries=0)
        out = await asyncio.gather(*[client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": str(i)}]) for i in range(5)])
        await client.close()
        return out

    results = asyncio.run(run())
    assert [r.choices[0].message.content for r in results] == ["Hello there"] * 5


def test_same_public_and_upstream_name_forwards_original_bytes(gateway, upstream):
    upstream.json(CHAT_RESPONSE)
    body = b'{"model":"same-name",  "messages":[{"role":"user","content":"x"}]}'
    httpx.post(f"{gateway.url}/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert upstream.last.body == body


def test_sdk_streaming_sync_and_async(gateway, upstream):
    chunks = [sse_event(chat_chunk(role=True)), sse_event(chat_chunk("Hel")), sse_event(chat_chunk("lo")),
              sse_event(chat_chunk(finish="stop")),
              sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 3, "completion_tokens": 2,
                                                         "total_tokens": 5})),
              b"data: [DONE]\n\n"]
    upstream.sse(chunks)
    stream = sdk(gateway).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}],
                                                  stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello"

    async def run():
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="sk-x", max_retries=0)
        stream = await client.chat.completions.create(model="gpt-test", stream=True,
                                                      stream_options={"include_usage": True},
                                                      messages=[{"role": "user", "content": "hi"}])
        got = [c async for c in stream]
        await client.close()
        return got

    got = asyncio.run(run())
    assert got[-1].usage.total_tokens == 5 and got[-1].choices == []


def test_completions_and_embeddings(gateway, upstream):
    upstream.json({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "up-model",
                   "choices": [{"index": 0, "text": " world", "logprobs": None, "finish_reason": "length"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    client = sdk(gateway)
    assert client.completions.create(model="gpt-test", prompt="hello").choices[0].text == " world"
    assert upstream.last.path == "/v1/completions"
    upstream.json({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}],
                   "model": "up-model", "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    emb = client.embeddings.create(model="gpt-test", input="hello", encoding_format="float")
    assert emb.data[0].embedding == [0.5, -0.5]
    assert upstream.last.path == "/v1/embeddings"


def test_models_endpoints(gateway):
    client = sdk(gateway)
    assert sorted(m.id for m in client.models.list()) == ["gpt-test", "mock-gpt", "same-name"]
    assert client.models.retrieve("gpt-test").id == "gpt-test"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_health_and_readiness(gateway):
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_other_v1_paths_pass_through(gateway, upstream):
    upstream.json({"id": "resp_1", "object": "response", "output": []})
    r = httpx.post(f"{gateway.url}/v1/responses?x=1", json={"model": "gpt-test", "input": "hi"})
    assert r.status_code == 200 and r.json()["id"] == "resp_1"
    assert upstream.last.path == "/v1/responses" and upstream.last.query == "x=1"
    assert upstream.last.json() == {"model": "up-model", "input": "hi"}


def test_passthrough_stream_is_relayed_raw(gateway, upstream):
    events = [b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n",
              b"event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n"]
    upstream.sse(events)
    r = httpx.post(f"{gateway.url}/v1/responses", json={"model": "gpt-test", "input": "hi", "stream": True})
    assert r.content == b"".join(events)
    assert "stream_options" not in upstream.last.json()  # only chat/completions get usage injected


def test_mock_backend_is_deterministic_and_streams(make_gateway, upstream):
    from tests.support.gateway import gateway_config
    gw = make_gateway(gateway_config(upstream.url))
    client = sdk(gw)
    a = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "same"}])
    b = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "same"}])
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.completion_tokens == 16
    streamed = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "same"}],
                                              stream=True, max_tokens=5)
    parts = [c for c in streamed]
    assert all(c.usage is None for c in parts)
    assert len([c for c in parts if c.choices and c.choices[0].delta.content]) == 5


def test_upstream_sees_the_gateways_user_agent_only(gateway, upstream):
    # Neither the client's User-Agent nor aiohttp's own (which names its version) goes upstream.
    upstream.json(CHAT_RESPONSE)
    httpx.post(f"{gateway.url}/v1/chat/completions", headers={"User-Agent": "client-app/1.0"},
               json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
    agents = [v for k, v in upstream.last.headers.items() if k.lower() == "user-agent"]
    assert agents == ["llm-gateway"]
