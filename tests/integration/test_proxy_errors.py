"""Errors in OpenAI's format, upstream failures, timeouts, headers and client disconnects."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import httpx
import openai
import orjson
import pytest

from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.gateway import gateway_config
from tests.support.polling import async_wait_for, wait_for

MSG = [{"role": "user", "content": "hi"}]


def assert_openai_error(r: httpx.Response, status: int, **fields) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    for k, v in fields.items():
        assert err[k] == v, (k, err)
    assert r.headers.get("x-request-id")
    return err


def test_malformed_json_400(gateway):
    r = httpx.post(f"{gateway.url}/v1/chat/completions", content=b"{not json",
                   headers={"Content-Type": "application/json"})
    assert_openai_error(r, 400, type="invalid_request_error")


def test_body_must_be_object_and_model_required(gateway):
    assert_openai_error(httpx.post(f"{gateway.url}/v1/chat/completions", json=[1]), 400)
    assert_openai_error(httpx.post(f"{gateway.url}/v1/chat/completions", json={"messages": MSG}), 400, param="model")


def test_messages_must_be_a_list(gateway, upstream):
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-test", "messages": "hi"})
    assert_openai_error(r, 400, param="messages")
    assert upstream.received == []


def test_unknown_model_404_lists_models(gateway, upstream):
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nope", messages=MSG)
    message = info.value.body["message"]
    assert "gpt-nope" in message and "gpt-test" in message and "mock-gpt" in message
    assert info.value.body["code"] == "model_not_found"
    assert upstream.received == []


def test_body_over_limit_413(make_gateway, upstream):
    gw = make_gateway(gateway_config(upstream.url, extra="server:\n  body_limit_bytes: 2048\n"))
    big = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 4096}]}
    assert_openai_error(httpx.post(f"{gw.url}/v1/chat/completions", json=big), 413, code="payload_too_large")

    def chunked():  # no Content-Length: the limit still holds while reading
        yield orjson.dumps(big)

    r = httpx.post(f"{gw.url}/v1/chat/completions", content=chunked(), headers={"Content-Type": "application/json"})
    assert_openai_error(r, 413)
    assert upstream.received == []


def test_upstream_4xx_5xx_pass_through(gateway, upstream):
    err = {"error": {"message": "Invalid 'temperature'", "type": "invalid_request_error",
                     "param": "temperature", "code": None}}
    upstream.json(err, status=400)
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG})
    assert r.status_code == 400 and r.json() == err
    upstream.json(b"<html>bad gateway</html>", status=500, headers={"Content-Type": "text/html"})
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG})
    body = assert_openai_error(r, 500, type="upstream_error")
    assert "bad gateway" in body["message"]


def test_429_keeps_retry_after_and_ratelimit_headers(gateway, upstream):
    upstream.json({"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                             "code": "rate_limit_exceeded"}}, status=429,
                  headers={"Retry-After": "7", "x-ratelimit-remaining-requests": "0"})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-test", messages=MSG)
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_unreachable_upstream_502(make_gateway):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        gw = make_gateway(gateway_config(f"http://127.0.0.1:{port}/v1"))
        r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG})
    assert_openai_error(r, 502, code="upstream_unreachable")
    assert "sk-backend-secret" not in r.text


def test_first_byte_timeout_504(make_gateway, upstream):
    gw = make_gateway(gateway_config(upstream.url, backend_extra="    timeouts: {first_byte: 0.3}"))
    upstream.hang()
    t0 = time.perf_counter()
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG})
    assert_openai_error(r, 504, code="upstream_timeout")
    assert time.perf_counter() - t0 < 10  # the upstream never answers: only the timeout ends it


def test_read_timeout_midstream_is_an_error_event(make_gateway, upstream):
    gw = make_gateway(gateway_config(upstream.url, backend_extra="    timeouts: {read: 0.3}"))
    upstream.sse([sse_event(chat_chunk("a")), sse_event(chat_chunk("b"))], chunk_delay_s=2)
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions",
                      json={"model": "gpt-test", "messages": MSG, "stream": True}) as r:
        got = b"".join(r.iter_bytes())
    assert got.startswith(sse_event(chat_chunk("a")))
    assert orjson.loads(got.split(b"\n\n")[1][6:])["error"]["code"] == "upstream_timeout"


def test_gzip_upstream_body_is_decoded_consistently(gateway, upstream):
    payload = {"id": "x", "object": "chat.completion", "choices": [], "model": "m"}
    upstream.json(payload, gzip=True)
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG},
                   headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.json() == payload


def test_authorization_never_forwarded_backend_key_used(gateway, upstream):
    upstream.json({"ok": True})
    httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG},
               headers={"Authorization": "Bearer sk-client-secret", "x-api-key": "sk-other", "x-team": "a"})
    sent = {k.lower(): v for k, v in upstream.last.headers.items()}
    assert sent["authorization"] == "Bearer sk-backend-secret"
    assert "x-api-key" not in sent and "x-team" not in sent
    assert "sk-client-secret" not in repr(upstream.last)


def test_forward_headers_allow_list(make_gateway, upstream):
    gw = make_gateway(gateway_config(upstream.url, extra="server:\n  forward_headers: [x-team-*, OpenAI-Beta]\n"))
    upstream.json({"ok": True})
    httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG},
               headers={"X-Team-Id": "t1", "OpenAI-Beta": "assistants=v2", "X-Other": "no",
                        "Authorization": "Bearer sk-client-secret"})
    sent = {k.lower(): v for k, v in upstream.last.headers.items()}
    assert sent["x-team-id"] == "t1" and sent["openai-beta"] == "assistants=v2"
    assert "x-other" not in sent and sent["authorization"] == "Bearer sk-backend-secret"


def test_request_id_echoed_or_generated(gateway, upstream):
    upstream.json({"ok": True})
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG},
                   headers={"x-request-id": "req-123"})
    assert r.headers["x-request-id"] == "req-123" and r.headers["x-gateway-backend"] == "fake"
    r2 = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "nope", "messages": MSG})
    assert len(r2.headers["x-request-id"]) == 36
    assert httpx.get(f"{gateway.url}/nowhere").headers["x-request-id"]


async def _disconnect_midstream(url: str, body: dict) -> float:
    """Read the first bytes of a stream, then hang up; returns when (``perf_counter``)."""
    async with aiohttp.ClientSession() as session:
        resp = await session.post(url, json=body)  # returns once headers arrive …
        await resp.content.readany()  # … and the stream is under way
        t = time.perf_counter()
        resp.close()
        return t


def test_client_disconnect_cancels_streaming_upstream(gateway, upstream):
    upstream.sse([sse_event(chat_chunk(str(i))) for i in range(200)], chunk_delay_s=0.05)
    t_close = asyncio.run(_disconnect_midstream(f"{gateway.url}/v1/chat/completions",
                                                {"model": "gpt-test", "messages": MSG, "stream": True}))
    wait_for(lambda: upstream.disconnects, what="the upstream to see the disconnect")
    # At once, not when the 10 s stream ends; the bound only has to tell those apart on a busy machine.
    assert upstream.disconnects[0] - t_close < 5
    assert not upstream.completed


def test_client_disconnect_cancels_nonstreaming_upstream(gateway, upstream):
    upstream.hang()

    async def run() -> float:
        async with aiohttp.ClientSession() as session:
            task = asyncio. create_task(session.post(f"{gateway.url}/v1/chat/completions",
                                                     json={"model": "gpt-test", "messages": MSG}))
            await async_wait_for(lambda: upstream.received, what="the request upstream")
            t = time.perf_counter()
            task.cancel()  # closes the client connection
            return t

    t_close = asyncio.run(run())
    wait_for(lambda: upstream.disconnects, what="the upstream to see the disconnect")
    assert upstream.disconnects[0] - t_close < 5  # at once; the upstream itself never answers


def test_upstream_error_echoing_the_backend_key_is_scrubbed(gateway, upstream):
    upstream.json({"error": {"message": "Incorrect API key provided: sk-backend-secret", "type": "invalid_request_error",
                             "param": None, "code": "invalid_api_key"}}, status=401)
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG})
    assert r.status_code == 401 and "sk-backend-secret" not in r.text and "***" in r.json()["error"]["message"]
