"""Anthropic's Messages API inbound (``POST /v1/messages``) with the official ``anthropic`` SDK as
the client, translated to OpenAI-type backends (the fake upstream, the built-in mock): requests,
answers, streams (re-cut at random byte boundaries), tool use, errors in Anthropic's shape, rows."""

from __future__ import annotations

import asyncio
import random

import anthropic
import httpx
import orjson
import pytest

from tests.support.access import KEY_A, sha
from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.gateway import gateway_config
from tests.support.telemetry import chdb_dsn, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select

USER = [{"role": "user", "content": "hello there"}]
WEATHER = {"name": "get_weather", "description": "Weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CHAT = {"id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 4}}}


def client(gw, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def tool_chunk(index: int, *, call_id: str | None = None, name: str | None = None, args: str = "") -> dict:
    call: dict = {"index": index, "function": {"arguments": args}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    chunk = chat_chunk()
    chunk["choices"][0]["delta"] = {"tool_calls": [call]}
    return chunk


def recut(chunks: list[bytes], rng: random.Random) -> list[bytes]:
    """The same bytes cut at random boundaries (inside events, lines, UTF-8 characters)."""
    data = b"".join(chunks)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 12)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# --- translated to an OpenAI-type backend -------------------------------------------------------
def test_json_request_and_answer_translated(upstream, gateway):
    upstream.json(CHAT)
    message = client(gateway).messages.create(
        model="gpt-test", max_tokens=64, system=[{"type": "text", "text": "Be brief."}], messages=[
            {"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "iVBORw0KGgo="}}]}],
        stop_sequences=["END"], metadata={"user_id": "u-1"}, service_tier="auto",
        extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 5,  # sampling fields: older API versions
                    "seed": 7})  # not Anthropic's: passed on
    sent = upstream.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-backend-secret"
    assert sent.json() == {
        "model": "up-model", "max_completion_tokens": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["END"],
        "user": "u-1", "seed": 7, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "Hi!"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (8, 4, 3)


@pytest.mark.parametrize("finish, reason", [("length", "max_tokens"), ("tool_calls", "tool_use"),
                                            ("content_filter", "refusal")])
def test_stop_reasons(upstream, gateway, finish, reason):
    upstream.json({**CHAT, "choices": [{**CHAT["choices"][0], "finish_reason": finish}]})
    assert client(gateway).messages.create(model="gpt-test", max_tokens=5, messages=USER).stop_reason == reason


def test_stop_sequence_named_by_vllm(upstream, gateway):
    upstream.json({**CHAT, "choices": [{**CHAT["choices"][0], "stop_reason": "END"}]})
    message = client(gateway).messages.create(model="gpt-test", max_tokens=5, messages=USER, stop_sequences=["END"])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


def test_tool_use_round_trip(upstream, gateway):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    upstream.json({**CHAT, "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [call]}}]})
    c = client(gateway)
    first = c.messages.create(model="gpt-test", max_tokens=64, messages=USER, tools=[WEATHER],
                              tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert upstream.last.json()["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city", "parameters": WEATHER["input_schema"]}}]
    assert upstream.last.json()["tool_choice"] == "required" and upstream.last.json()["parallel_tool_calls"] is False
    assert first.stop_reason == "tool_use"
    (use,) = first.content
    assert (use.type, use.id, use.name, use.input) == ("tool_use", "call_1", "get_weather", {"city": "Paris"})

    upstream.json(CHAT)
    c.messages.create(model="gpt-test", max_tokens=64, tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"},
                      messages=[*USER, {"role": "assistant", "content": first.content},
                                {"role": "user", "content": [
                                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C, sunny"},
                                    {"type": "text", "text": "And tomorrow?"}]}])
    sent = upstream.last.json()
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"},
        {"role": "user", "content": "And tomorrow?"}]


STREAM = [sse_event(chat_chunk(role=True)), sse_event(chat_chunk("Hel")), sse_event(chat_chunk("lo ✓")),
          sse_event(chat_chunk(finish="stop")),
          sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})),
          b"data: [DONE]\n\n"]


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_stream_translated_and_recut(upstream, gateway, seed):
    upstream.sse(STREAM if seed is None else recut(STREAM, random.Random(seed)))
    with client(gateway).messages.stream(model="gpt-test", max_tokens=64, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert upstream.last.json()["stream"] is True
    assert upstream.last.json()["stream_options"] == {"include_usage": True}
    assert text == "Hello ✓" and final.content[0].text == "Hello ✓"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 2)


def test_stream_event_sequence_with_thinking_and_tools(upstream, gateway):
    think = chat_chunk()
    think["choices"][0]["delta"] = {"reasoning_content": "Let me check."}
    upstream.sse([sse_event(chat_chunk(role=True)), sse_event(think), sse_event(chat_chunk("Checking.")),
                  sse_event(tool_chunk(0, call_id="call_a", name="get_weather")),
                  sse_event(tool_chunk(0, args='{"city":')), sse_event(tool_chunk(0, args='"Oslo"}')),
                  sse_event(tool_chunk(1, call_id="call_b", name="get_weather", args='{"city":"Rome"}')),
                  sse_event(chat_chunk(finish="tool_calls")),
                  sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 20, "completion_tokens": 9,
                                                             "total_tokens": 29})),
                  b"data: [DONE]\n\n"])
    stream = client(gateway).messages.create(model="gpt-test", max_tokens=64, messages=USER, tools=[WEATHER],
                                             stream=True)
    events = list(stream)
    kinds = [e.type if e.type != "content_block_delta" else e.delta.type for e in events]
    assert kinds == ["message_start", "content_block_start", "thinking_delta", "content_block_stop",
                     "content_block_start", "text_delta", "content_block_stop",
                     "content_block_start", "input_json_delta", "input_json_delta", "content_block_stop",
                     "content_block_start", "input_json_delta", "content_block_stop", "message_delta", "message_stop"]
    starts = [e for e in events if e.type == "content_block_start"]
    assert [s.index for s in starts] == [0, 1, 2, 3]
    assert [s.content_block.type for s in starts] == ["thinking", "text", "tool_use", "tool_use"]
    assert (starts[2].content_block.id, starts[2].content_block.name) == ("call_a", "get_weather")
    delta = events[-2]
    assert delta.delta.stop_reason == "tool_use" and delta.usage.output_tokens == 9 and delta.usage.input_tokens == 20


def test_stream_accumulated_tool_input(upstream, gateway):
    upstream.sse([sse_event(tool_chunk(0, call_id="call_a", name="get_weather")),
                  sse_event(tool_chunk(0, args='{"ci')), sse_event(tool_chunk(0, args='ty":"Oslo"}')),
                  sse_event(chat_chunk(finish="tool_calls")), b"data: [DONE]\n\n"])
    with client(gateway).messages.stream(model="gpt-test", max_tokens=64, messages=USER, tools=[WEATHER]) as s:
        final = s.get_final_message()
    assert final.content[0].input == {"city": "Oslo"} and final.stop_reason == "tool_use"


def test_stream_that_finished_without_done_is_complete(upstream, gateway):
    upstream.sse(STREAM[:-1])  # every choice finished, usage sent, then a clean close without [DONE]
    with client(gateway).messages.stream(model="gpt-test", max_tokens=64, messages=USER) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Hello ✓" and final.stop_reason == "end_turn" and final.usage.output_tokens == 2


def test_stream_cut_short_ends_with_an_error_event(upstream, gateway):
    upstream.sse(STREAM[:3])
    with pytest.raises(anthropic.APIStatusError) as info:
        with client(gateway).messages.stream(model="gpt-test", max_tokens=64, messages=USER) as stream:
            for _ in stream:
                pass
    assert "ended the stream before" in str(info.value)


def test_thinking_structured_output_and_history_translated(upstream, gateway):
    upstream.json(CHAT)
    c = client(gateway)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    c.messages.create(model="gpt-test", max_tokens=64, thinking={"type": "enabled", "budget_tokens": 2048},
                      output_config={"format": {"type": "json_schema", "schema": schema}}, messages=[
                          *USER,
                          {"role": "assistant", "content": [
                              {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                              {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                                        "content": [{"type": "text", "text": "no such city"}]}]}])
    sent = upstream.last.json()
    assert sent["reasoning_effort"] == "low"
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "Error: no such city"}]
    c.messages.create(model="gpt-test", max_tokens=64, thinking={"type": "enabled", "budget_tokens": 20000},
                      messages=USER)
    assert upstream.last.json()["reasoning_effort"] == "high"
    upstream.json({**CHAT, "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "42", "reasoning_content": "6 times 7"}}]})
    answer = c.messages.create(model="gpt-test", max_tokens=64, messages=USER)
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in answer.content] == [
        ("thinking", "6 times 7"), ("text", "42")]


# --- the built-in mock, sync and async ----------------------------------------------------------
def test_mock_backend_sync_async_and_streams(gateway):
    c = client(gateway)
    message = c.messages.create(model="mock-gpt", max_tokens=50, messages=USER)
    assert message.content[0].text and message.usage.output_tokens > 0
    with c.messages.stream(model="mock-gpt", max_tokens=50, messages=USER) as stream:
        assert "".join(stream.text_stream) == message.content[0].text  # the mock is deterministic
    raw = [e.type for e in c.messages.create(model="mock-gpt", max_tokens=50, messages=USER, stream=True)]
    assert raw[0] == "message_start" and raw[-2:] == ["message_delta", "message_stop"]

    async def run():
        async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key="x", max_retries=0) as ac:
            answer = await ac.messages.create(model="mock-gpt", max_tokens=50, messages=USER)
            async with ac.messages.stream(model="mock-gpt", max_tokens=50, messages=USER) as stream:
                streamed = await stream.get_final_message()
            return answer, streamed
    answer, streamed = asyncio.run(run())
    assert answer.content[0].text == streamed.content[0].text == message.content[0].text


def test_mock_tool_use(gateway):
    message = client(gateway).messages.create(model="mock-gpt", max_tokens=200, messages=USER, tools=[WEATHER],
                                              tool_choice={"type": "tool", "name": "get_weather"})
    assert message.stop_reason == "tool_use"
    (use,) = [b for b in message.content if b.type == "tool_use"]
    assert use.name == "get_weather" and isinstance(use.input.get("city"), str)


# --- errors in Anthropic's shape ----------------------------------------------------------------
def test_gateway_errors_in_anthropic_shape(upstream, make_gateway):
    gw = make_gateway(gateway_config(upstream.url, extra=f"""
keys:
  - {{tenant: a, sha256: {sha(KEY_A)}, models: ["gpt-*"], rpm: 3}}
"""))
    with pytest.raises(anthropic.AuthenticationError) as info:
        client(gw, "sk-wrong").messages.create(model="gpt-test", max_tokens=5, messages=USER)
    assert info.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                          "message": info.value.body["error"]["message"]}}
    c = client(gw, KEY_A)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        c.messages.create(model="mock-gpt", max_tokens=5, messages=USER)
    assert denied.value.body["error"]["type"] == "permission_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        c.messages.create(model="gpt-test", messages=USER, max_tokens=5, extra_body={"max_tokens": "5"})
    assert bad.value.body["error"] == {"type": "invalid_request_error",
                                       "message": "max_tokens: Input should be a valid integer"}
    assert not [r for r in upstream.received if r.path.endswith("chat/completions")]  # refused here
    upstream.json(CHAT)
    bearer = anthropic.Anthropic(base_url=gw.url, auth_token=KEY_A, max_retries=0)  # Authorization: Bearer
    assert bearer.messages.create(model="gpt-test", max_tokens=5, messages=USER).content[0].text == "Hi!"
    with pytest.raises(anthropic.RateLimitError) as limited:
        for _ in range(3):  # over the key's 3 requests a minute
            c.messages.create(model="gpt-test", max_tokens=5, messages=USER)
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    assert limited.value.response.headers["retry-after"]


def test_unknown_model_and_unreachable_backend_in_anthropic_shape(make_gateway):
    gw = make_gateway(gateway_config("http://127.0.0.1:9/v1"))  # nothing listens on port 9
    with pytest.raises(anthropic.NotFoundError) as missing:
        client(gw).messages.create(model="no-such-model", max_tokens=5, messages=USER)
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.InternalServerError) as down:
        client(gw).messages.create(model="gpt-test", max_tokens=5, messages=USER)
    assert down.value.status_code == 502
    assert down.value.body["type"] == "error" and down.value.body["error"]["type"] == "api_error"


def test_upstream_errors_in_anthropic_shape(upstream, gateway):
    upstream.json({"error": {"message": "The server had an error", "type": "server_error", "code": None}}, status=500)
    with pytest.raises(anthropic.InternalServerError) as info:
        client(gateway).messages.create(model="gpt-test", max_tokens=5, messages=USER)
    assert info.value.body == {"type": "error", "error": {"type": "api_error", "message": "The server had an error"}}
    upstream.json({"error": {"message": "bad value for top_p", "type": "invalid_request_error"}}, status=400)
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(gateway).messages.create(model="gpt-test", max_tokens=5, messages=USER)
    assert bad.value.body["error"] == {"type": "invalid_request_error", "message": "bad value for top_p"}
    upstream.sse([sse_event(chat_chunk(role=True)), sse_event({"error": {"message": "boom", "type": "server_error"}})])
    with pytest.raises(anthropic.APIStatusError) as mid:
        for _ in client(gateway).messages.create(model="gpt-test", max_tokens=5, messages=USER, stream=True):
            pass
    assert "boom" in str(mid.value)


def test_unreadable_bodies_and_answers_in_anthropic_shape(upstream, make_gateway):
    gw = make_gateway(gateway_config(upstream.url, extra="server: {body_limit_bytes: 4096}\n"))
    for content, status in ((b"{not json", 400), (b"[1]", 400), (b'{"max_tokens": 5}', 400),
                            (b'{"model": "gpt-test", "max_tokens": 5, "messages": [], "x": "' + b"a" * 5000 + b'"}',
                             413)):
        r = httpx.post(f"{gw.url}/v1/messages", content=content, timeout=30,
                       headers={"content-type": "application/json", "x-api-key": "k"})
        assert r.status_code == status, r.text
        assert r.json()["type"] == "error" and set(r.json()["error"]) == {"type", "message"}
        assert r.json()["error"]["type"] == ("request_too_large" if status == 413 else "invalid_request_error")
    upstream.json({"ok": True})  # not a chat completion: the backend's fault, not an empty message
    with pytest.raises(anthropic.InternalServerError) as info:
        client(gw).messages.create(model="gpt-test", max_tokens=5, messages=USER)
    assert info.value.status_code == 502 and "other than a chat completion" in info.value.body["error"]["message"]


def test_unsupported_blocks_are_a_400(upstream, gateway):
    with pytest.raises(anthropic.BadRequestError) as info:
        client(gateway).messages.create(model="gpt-test", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}])
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "document" in info.value.body["error"]["message"]


# --- the row --------------------------------------------------------------------------------------
def test_rows_have_tokens_ttft_and_cost(upstream, make_gateway, tmp_path, tdb):  # noqa: F811
    gw = make_gateway(gateway_config(upstream.url, extra="""
pricing:
  models:
    up-model: {input: 1.0, cached_input: 0.5, output: 2.0}
""" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")))
    upstream.json(CHAT)
    client(gw).messages.create(model="gpt-test", max_tokens=64, messages=USER)
    upstream.sse(STREAM)
    with client(gw).messages.stream(model="gpt-test", max_tokens=64, messages=USER) as stream:
        stream.get_final_message()
    flush(gw)
    rows = select(tdb, "SELECT endpoint, stream, status_code, prompt_tokens, completion_tokens, cached_tokens, "
                       "cost_usd, ttft_ms, finish_reason FROM llm_requests ORDER BY ts_start")
    assert [(r["endpoint"], r["stream"], r["status_code"]) for r in rows] == [("messages", 0, 200), ("messages", 1, 200)]
    json_row, stream_row = rows
    assert (json_row["prompt_tokens"], json_row["completion_tokens"], json_row["cached_tokens"]) == (12, 3, 4)
    assert json_row["cost_usd"] == pytest.approx((8 * 1.0 + 4 * 0.5 + 3 * 2.0) / 1e6)
    assert (stream_row["prompt_tokens"], stream_row["completion_tokens"]) == (9, 2)
    assert stream_row["cost_usd"] == pytest.approx((9 * 1.0 + 2 * 2.0) / 1e6)
    assert stream_row["ttft_ms"] is not None and stream_row["finish_reason"] == "stop"
    assert orjson.loads(orjson.dumps(rows))  # plain JSON values


@pytest.mark.parametrize(("body", "message"), [
    ({"max_tokens": 10, "messages": "hi"}, "messages: Input should be a valid list"),
    ({"max_tokens": 10}, "messages: Field required"),
    ({"max_tokens": 0, "messages": USER}, "max_tokens: Input should be greater than or equal to 1"),
    ({"max_tokens": -5, "messages": USER}, "max_tokens: Input should be greater than or equal to 1"),
])
def test_a_body_anthropic_would_refuse_is_a_400_saying_why(upstream, gateway, body, message):
    r = httpx.post(f"{gateway.url}/v1/messages", json={"model": "gpt-test", **body})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    assert not upstream.received
