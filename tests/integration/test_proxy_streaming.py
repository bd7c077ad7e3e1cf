"""SSE relay: chunk boundaries, UTF-8 splits, usage stripping, mid-stream failures, truncation."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from gateway.app import FINISHERS
from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.gateway import gateway_config
from tests.support.polling import wait_for

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def stream_raw(gateway, **body) -> bytes:
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True, **body}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=payload) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return b"".join(r.iter_bytes())


def events_of(text: str) -> list[bytes]:
    return [sse_event(chat_chunk(role=True))] + [sse_event(chat_chunk(p)) for p in text.split("|")] + [
        sse_event(chat_chunk(finish="stop")), sse_event(chat_chunk(choices=False, usage=USAGE)), b"data: [DONE]\n\n"]


def test_events_split_across_reads_arrive_intact(gateway, upstream):
    whole = b"".join(events_of("Hel|lo| wor|ld"))
    # Re-cut the stream at arbitrary byte offsets, including inside "data:" and inside JSON.
    pieces = [whole[i:i + 7] for i in range(0, len(whole), 7)]
    upstream.sse(pieces, chunk_delay_s=0.001)
    got = stream_raw(gateway, stream_options={"include_usage": True})
    assert got == whole


def test_coalesced_events_in_one_read(gateway, upstream):
    whole = b"".join(events_of("a|b|c"))
    upstream.sse([whole])
    assert stream_raw(gateway, stream_options={"include_usage": True}) == whole


def test_utf8_split_mid_character_multiline_data_and_keepalive(gateway, upstream):
    text_event = sse_event(chat_chunk("héllo 世界 🎉"))
    cut = text_event.index("世".encode()) + 1  # inside a 3-byte character
    multi = b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",\n' \
            b'data: "choices":[{"index":0,"delta":{"content":"!"},"finish_reason":null}]}\n\n'
    chunks = [b": keep-alive\n\n", sse_event(chat_chunk(role=True)), text_event[:cut], text_event[cut:],
              multi, b": ping\r\n\r\n", sse_event(chat_chunk(finish="stop")), b"data: [DONE]\n\n"]
    upstream.sse(chunks, chunk_delay_s=0.002)
    got = stream_raw(gateway, stream_options={"include_usage": True})
    assert got == b"".join(chunks)
    # and the SDK reassembles the content, multi-line data included
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0)
    stream = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}],
                                            stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "héllo 世界 🎉!"


def test_crlf_events(gateway, upstream):
    body = (b"data: " + orjson.dumps(chat_chunk("x")) + b"\r\n\r\n") * 2 + b"data: [DONE]\r\n\r\n"
    upstream.sse([body[:5], body[5:-3], body[-3:]], chunk_delay_s=0.002)
    assert stream_raw(gateway, stream_options={"include_usage": True}) == body


def test_usage_is_requested_upstream_and_stripped_for_the_client(gateway, upstream):
    chunks = [sse_event(chat_chunk(role=True, usage_null=True)), sse_event(chat_chunk("Hi", usage_null=True)),
              sse_event(chat_chunk(finish="stop", usage_null=True)),
              sse_event(chat_chunk(choices=False, usage=USAGE)), b"data: [DONE]\n\n"]
    upstream.sse(chunks)
    got = stream_raw(gateway)
    sent = upstream.last.json()
    assert sent["stream_options"] == {"include_usage": True}
    assert b'"usage"' not in got  # neither the usage chunk nor the "usage":null members
    expected = [sse_event(chat_chunk(role=True)), sse_event(chat_chunk("Hi")),
                sse_event(chat_chunk(finish="stop")), b"data: [DONE]\n\n"]
    assert got == b"".join(expected)


def test_usage_kept_when_client_asks(gateway, upstream):
    chunks = events_of("Hi")
    upstream.sse(chunks)
    got = stream_raw(gateway, stream_options={"include_usage": True})
    assert got == b"".join(chunks)
    assert upstream.last.json()["stream_options"] == {"include_usage": True}


def test_other_stream_options_are_preserved(gateway, upstream):
    upstream.sse(events_of("Hi"))
    stream_raw(gateway, stream_options={"include_obfuscation": False})
    assert upstream.last.json()["stream_options"] == {"include_obfuscation": False, "include_usage": True}


def test_completions_stream_strips_usage_too(gateway, upstream):
    chunk = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
             "choices": [{"index": 0, "text": "ok", "logprobs": None, "finish_reason": None}]}
    usage = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m", "choices": [], "usage": USAGE}
    upstream.sse([sse_event(chunk), sse_event(usage), b"data: [DONE]\n\n"])
    with httpx.stream("POST", f"{gateway.url}/v1/completions",
                      json={"model": "gpt-test", "prompt": "x", "stream": True}) as r:
        got = b"".join(r.iter_bytes())
    assert got == sse_event(chunk) + b"data: [DONE]\n\n"


def test_midstream_failure_sends_error_event_and_sdk_raises(gateway, upstream):
    chunks = [sse_event(chat_chunk(role=True)), sse_event(chat_chunk("partial")), sse_event(chat_chunk("never"))]
    upstream.sse(chunks, abort_after=2, chunk_delay_s=0.01)
    got = stream_raw(gateway)
    last = got.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b"data: ")
    err = orjson.loads(last[6:])["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "upstream_error"
    assert got.startswith(chunks[0] + chunks[1])

    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0)
    stream = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}],
                                            stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_stream_without_done_is_reported_as_truncated(gateway, upstream):
    chunks = [sse_event(chat_chunk(role=True)), sse_event(chat_chunk("cut"))]
    upstream.sse(chunks)  # clean end of the HTTP body, but no [DONE]
    got = stream_raw(gateway)
    assert got.startswith(b"".join(chunks))
    tail = orjson.loads(got[len(b"".join(chunks)) + 6:])
    assert tail["error"]["code"] == "stream_truncated"
    assert b"data: [DONE]" not in got


def _finished_outcomes(make_gateway, upstream):
    """A gateway on ``upstream`` whose finished requests' outcomes land in the returned list."""
    from gateway.app import FINISHERS
    from tests.support.gateway import gateway_config

    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n"))
    finished: list = []
    gw.app[FINISHERS].append(lambda ctx: finished.append((ctx.status_code, ctx.error_type, ctx.truncated)))
    return gw, finished


def test_stream_that_ends_cleanly_after_finishing_is_complete_without_done(make_gateway, upstream):
    """Every choice has its finish reason and the usage came: the connection closing without
    ``[DONE]`` is the end of a whole answer, relayed as sent, a success."""
    gw, finished = _finished_outcomes(make_gateway, upstream)
    upstream.sse(events_of("Hel|lo")[:-1])
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)
    stream = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-1].usage.total_tokens == 5
    wait_for(lambda: finished, what="the request to finish")
    assert finished == [(200, "", False)]

    got = stream_raw(gw)  # the client did not ask for usage: it is stripped, nothing is added
    assert got == b"".join(events_of("Hel|lo")[:-2])
    wait_for(lambda: len(finished) == 2, what="the second request to finish")
    assert finished[1] == (200, "", False)


def test_stream_ending_before_every_choice_finished_is_truncated(make_gateway, upstream):
    gw, finished = _finished_outcomes(make_gateway, upstream)
    two = [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"},
           {"index": 1, "delta": {"content": "b"}, "finish_reason": None}]
    upstream.sse([sse_event(chat_chunk(role=True)), sse_event({**chat_chunk(), "choices": two})], times=1)
    got = stream_raw(gw, n=2)
    assert orjson.loads(got.rstrip().rsplit(b"\n\n", 1)[-1][6:])["error"]["code"] == "stream_truncated"
    # Every choice finished, but the usage the client asked for never came: cut before the end.
    upstream.sse(events_of("a")[:-2], times=1)
    got = stream_raw(gw, stream_options={"include_usage": True})
    assert orjson.loads(got.rstrip().rsplit(b"\n\n", 1)[-1][6:])["error"]["code"] == "stream_truncated"
    wait_for(lambda: len(finished) == 2, what="both requests to finish")
    assert finished == [(502, "stream_truncated", True)] * 2


def test_upstream_error_before_first_byte_of_a_stream(gateway, upstream):
    upstream.json({"error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}},
                  status=503)
    r = httpx.post(f"{gateway.url}/v1/chat/completions",
                   json={"model": "gpt-test", "messages": [], "stream": True})
    assert r.status_code == 503
    assert r.json()["error"]["message"] == "overloaded"
    assert r.headers["content-type"].startswith("application/json")


def test_client_closing_right_after_done_is_a_complete_stream(make_gateway, upstream):
    """SDKs hang up as soon as they read [DONE]; if the upstream lingers after it (here a
    keep-alive comment 0.3 s later), the handler is cancelled — yet the request succeeded."""
    import asyncio

    import aiohttp

    from gateway.app import FINISHERS
    from tests.support.gateway import gateway_config

    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n"))
    finished = []
    gw.app[FINISHERS].append(lambda ctx: finished.append((ctx.status_code, ctx.error_type)))
    upstream.sse(events_of("a|b") + [b": lingering\n\n"], chunk_delay_s=0.05)

    async def read_until_done() -> bytes:
        async with aiohttp.ClientSession() as session:
            resp = await session.post(f"{gw.url}/v1/chat/completions", json={
                "model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": True})
            got = b""
            while b"data: [DONE]" not in got:
                got += await resp.content.readany()
            resp.close()  # hang up at once, as the SDK does
            return got

    assert b"data: [DONE]" in asyncio.run(read_until_done())
    wait_for(lambda: finished, what="the request to finish")
    assert finished == [(200, "")]


@pytest.mark.parametrize("usage", [
    {**USAGE, "prompt_tokens_details": "none"}, {**USAGE, "completion_tokens_details": [1]},
    {"prompt_tokens": "3", "completion_tokens": 2.5, "total_tokens": True}, "unknown"])
def test_a_backends_odd_usage_is_relayed_as_sent_never_a_500(make_gateway, upstream, usage):
    records: list = []
    gateway = make_gateway(gateway_config(upstream.url, "telemetry: {enabled: false}"))
    gateway.app[FINISHERS].append(records.append)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0)
    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "up-model", "usage": usage,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
    upstream.json(answer, times=1)
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert orjson.loads(raw.content)["usage"] == usage
    upstream.sse([sse_event(chat_chunk("ok")), sse_event(chat_chunk(finish="stop")),
                  sse_event(chat_chunk(choices=False, usage=usage)), b"data: [DONE]\n\n"], times=1)
    body = stream_raw(gateway, stream_options={"include_usage": True})
    assert sse_event(chat_chunk(choices=False, usage=usage)) in body and body.endswith(b"data: [DONE]\n\n")
    wait_for(lambda: len(records) == 2, what="both requests to finish")
    for ctx in records:  # what is not a count is unknown
        assert ctx.status_code == 200
        assert ctx.usage.prompt_tokens in (3, None) and ctx.usage.cached_tokens is None
        assert ctx.usage.reasoning_tokens is None and ctx.usage.total_tokens in (5, None)


@pytest.mark.parametrize("answer", [
    {"choices": ["x"]}, {"choices": {"index": 0}}, {"id": 7, "model": 5, "choices": [{"index": 0, "text": 5}]},
    {"choices": [{"index": 0, "finish_reason": 5, "message": "ok", "delta": "ok"}]},
    {"choices": [{"index": 0, "delta": {"content": 5}, "finish_reason": None}]}])
def test_an_answer_not_shaped_as_openais_is_relayed_as_sent(gateway, upstream, answer):
    records: list = []
    gateway.app[FINISHERS].append(records.append)
    upstream.json(answer, times=1)
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-test", "messages": [{"role": "user",
                                                                                               "content": "x"}]})
    assert (r.status_code, r.json()) == (200, answer)
    upstream.sse([sse_event(answer), b"data: [DONE]\n\n"], times=1)
    assert stream_raw(gateway) == sse_event(answer) + b"data: [DONE]\n\n"
    wait_for(lambda: len(records) == 2, what="both requests to finish")
    for ctx in records:  # what the row reads is what fits: strings where strings belong
        assert all(type(v) is str for v in (ctx.model_served, ctx.response_id, ctx.finish_reason,
                                            *ctx.completion_text))
