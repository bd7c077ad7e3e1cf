"""Anthropic adapter edge cases beyond the shared conformance fixtures (tests/contract/)."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from gateway.config.models import Backend
from gateway.core.errors import InvalidRequestError, UpstreamError
from gateway.providers.anthropic import AnthropicAdapter, AnthropicStreamDecoder, translate_request
from tests.contract.harness import parse_events
from tests.support.fake_upstream import named_sse_event

USER = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def tr(**body):
    return translate_request({"model": "chat", "messages": [USER], **body}, "claude", 1000)


def backend(**kw):
    return Backend(type="anthropic", base_url="http://x/v1", **kw)


# --- requests ---------------------------------------------------------------------------------
def test_headers_version_key_and_custom_headers():
    adapter = AnthropicAdapter()
    assert adapter.static_headers(backend(api_key="k")) == {"anthropic-version": "2023-06-01", "x-api-key": "k"}
    assert adapter.static_headers(backend(api_version="2024-01-01")) == {"anthropic-version": "2024-01-01"}


def test_system_and_developer_messages_anywhere_become_system_blocks():
    out = translate_request({"messages": [{"role": "system", "content": "a"}, USER,
                                          {"role": "developer", "content": [{"type": "text", "text": "b"}]}]},
                            "claude", 10)
    assert out["system"] == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert out["messages"] == [USER]
    assert "system" not in tr()


def test_consecutive_same_role_turns_merge():
    out = translate_request({"messages": [USER, {"role": "user", "content": [{"type": "text", "text": "again"}]},
                                          {"role": "assistant", "content": "x"}, {"role": "assistant", "content": "y"}]},
                            "claude", 10)
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}]


def test_assistant_with_text_and_tool_calls_and_empty_assistant_dropped():
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]
    out = translate_request({"messages": [USER, {"role": "assistant", "content": "Let me look.", "tool_calls": calls},
                                          {"role": "tool", "tool_call_id": "c1",
                                           "content": [{"type": "text", "text": "result"}]},
                                          {"role": "assistant", "content": ""}]}, "claude", 10)
    assert out["messages"][1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Let me look."}, {"type": "tool_use", "id": "c1", "name": "f", "input": {}}]}
    assert out["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "result"}]}]}
    assert len(out["messages"]) == 3


def test_file_part_becomes_document_and_cache_control_is_kept():
    part = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
            "cache_control": {"type": "ephemeral"}}
    out = translate_request({"messages": [{"role": "user", "content": [part]}]}, "claude", 10)
    assert out["messages"][0]["content"] == [{"type": "document", "title": "a.pdf", "cache_control": {"type": "ephemeral"},
                                              "source": {"type": "base64", "media_type": "application/pdf",
                                                         "data": "JVBERi0="}}]


@pytest.mark.parametrize("choice, parallel, expected", [
    ("required", None, {"type": "any"}),
    ("none", False, {"type": "none"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (None, None, None),
    ("auto", True, {"type": "auto"}),
])
def test_tool_choice(choice, parallel, expected):
    body = {"tools": [TOOL]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    out = tr(**body)
    assert out.get("tool_choice") == expected
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]


def test_max_tokens_precedence_stop_string_and_dropped_fields():
    out = tr(max_tokens=5, max_completion_tokens=7, stop="END", stream=False, seed=1, store=True,
             presence_penalty=0, frequency_penalty=0.0, n=1, logprobs=False, response_format={"type": "text"},
             metadata={"k": "v"}, reasoning_effort="low")
    assert out == {"model": "claude", "max_tokens": 7, "messages": [USER], "stop_sequences": ["END"]}


@pytest.mark.parametrize("body, param", [
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": -1}, "frequency_penalty"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"modalities": ["text", "audio"]}, "audio"),
    ({"tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"tools": [TOOL], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]},
     "messages[0].tool_calls[0]"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages[0].tool_calls[0]"),
])
def test_unsupported_or_malformed_is_a_400_naming_the_field(body, param):
    with pytest.raises(InvalidRequestError) as info:
        tr(**body)
    assert info.value.status == 400 and info.value.param == param
    assert info.value.message.endswith(".")


def test_other_endpoints_are_refused():
    adapter = AnthropicAdapter()
    for endpoint in ("embeddings", "completions", "images/generations"):
        with pytest.raises(InvalidRequestError, match=f"/v1/{endpoint} is not available on Anthropic"):
            adapter.build_request(endpoint, {"model": "x"}, None, "claude", backend())


# --- responses and errors -----------------------------------------------------------------------
def test_parse_response_uses_the_clock_and_rejects_non_messages():
    adapter = AnthropicAdapter(clock=lambda: 1234.9)
    body = orjson.dumps({"id": "msg_1", "type": "message", "model": "claude", "content": [],
                         "stop_reason": "refusal", "usage": {"input_tokens": 1, "output_tokens": 0}})
    out = orjson.loads(adapter.parse_response("chat/completions", body))
    assert out["created"] == 1234
    assert out["choices"][0]["message"]["content"] == ""
    assert out["choices"][0]["finish_reason"] == "content_filter"
    with pytest.raises(UpstreamError):
        adapter.parse_response("chat/completions", b"<html>")
    with pytest.raises(UpstreamError):
        adapter.parse_response("chat/completions", b'{"type": "completion"}')


def test_map_error_status_only_and_non_json_bodies():
    adapter = AnthropicAdapter()
    assert adapter.map_error(529, b"") == (503, b"")
    assert adapter.map_error(404, b"") == (404, b"")
    status, body = adapter.map_error(502, b"<html>Bad gateway</html>")
    assert status == 502
    assert orjson.loads(body) == {"error": {"message": "<html>Bad gateway</html>", "type": "server_error",
                                            "param": None, "code": None}}
    status, body = adapter.map_error(413, b'{"type":"error","error":{"type":"request_too_large","message":"big"}}')
    assert (status, orjson.loads(body)["error"]["type"]) == (413, "invalid_request_error")


# --- streams ------------------------------------------------------------------------------------
def start(mid="msg_s"):
    return named_sse_event({"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": "claude", "content": [],
        "usage": {"input_tokens": 3, "output_tokens": 1}}})


def decode(chunks, include_usage=False):
    decoder = AnthropicStreamDecoder(include_usage, created=5)
    return parse_events(b"".join(decoder.feed(c) for c in chunks) + decoder.finish())


def test_stream_cut_short_has_no_done():
    events = decode([start(), named_sse_event({"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}}),
                     named_sse_event({"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": "Hel"}})])
    assert [e["choices"][0]["delta"] for e in events] == [{"role": "assistant", "content": ""}, {"content": "Hel"}]


def test_unterminated_last_event_and_crlf_are_read_and_later_events_ignored():
    stop = b"event: message_stop\r\ndata: {\"type\":\"message_stop\"}"  # no blank line at the end
    events = decode([start().replace(b"\n", b"\r\n"), stop])
    assert events[-1] == "[DONE]" and len(events) == 2
    events = decode([start(), named_sse_event({"type": "message_stop"}),
                     named_sse_event({"type": "message_delta", "delta": {"stop_reason": "end_turn"}})])
    assert events[-1] == "[DONE]" and len(events) == 2


def test_tool_without_streamed_input_gets_empty_object_and_thinking_is_reasoning():
    events = decode([
        start(),
        named_sse_event({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        named_sse_event({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        named_sse_event({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}}),
        named_sse_event({"type": "content_block_stop", "index": 0}),
        named_sse_event({"type": "content_block_start", "index": 1,
                         "content_block": {"type": "tool_use", "id": "t1", "name": "now", "input": {}}}),
        named_sse_event({"type": "content_block_stop", "index": 1}),
        named_sse_event({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                         "usage": {"output_tokens": 9, "cache_read_input_tokens": 100}}),
        named_sse_event({"type": "message_stop"})], include_usage=True)
    deltas = [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e["choices"]]
    assert deltas[1] == {"reasoning_content": "hmm"}
    assert deltas[2]["tool_calls"][0]["function"] == {"name": "now", "arguments": ""}
    assert deltas[3] == {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    assert events[-2]["usage"] == {"prompt_tokens": 103, "completion_tokens": 9, "total_tokens": 112,
                                   "prompt_tokens_details": {"cached_tokens": 100}}
    assert all(e["created"] == 5 for e in events[:-1])


# --- through the gateway ------------------------------------------------------------------------
def _config(url: str) -> str:
    return f"""
backends:
  claude: {{type: anthropic, base_url: {url}, api_key: sk-ant}}
  openai: {{type: openai, base_url: {url}, api_key: sk-oai}}
models:
  chat:
    targets: [{{backend: claude, model: claude-x}}, {{backend: openai, model: gpt-x}}]
    retry: {{attempts: 1}}
telemetry: {{enabled: false}}
"""


def test_overloaded_anthropic_fails_over_to_the_next_target(upstream, make_gateway):
    gateway = make_gateway(_config(upstream.url))
    upstream.json({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529, times=1)
    upstream.json({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-x", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "from openai"}, "finish_reason": "stop"}]})
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "chat", "messages": [USER]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "from openai"
    assert [x.path for x in upstream.received] == ["/v1/messages", "/v1/chat/completions"]
    assert r.headers["x-gateway-backend"] == "openai" and r.headers["x-gateway-attempts"] == "2"


def test_truncated_anthropic_stream_ends_with_an_error_event(upstream, make_gateway):
    gateway = make_gateway(_config(upstream.url))
    upstream.sse([start(), named_sse_event({"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}}),
                  named_sse_event({"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": "Hi"}})])
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions",
                      json={"model": "chat", "messages": [USER], "stream": True}) as r:
        events = parse_events(b"".join(r.iter_bytes()))
    assert events[1]["choices"][0]["delta"] == {"content": "Hi"}
    assert events[-1]["error"]["code"] == "stream_truncated"
    assert "[DONE]" not in events


def test_rate_limit_headers_pass_back_and_the_body_is_openai_shaped(upstream, make_gateway):
    gateway = make_gateway(_config(upstream.url).replace("{backend: openai, model: gpt-x}", ""))
    upstream.json({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, status=429,
                  headers={"retry-after": "30", "anthropic-ratelimit-requests-remaining": "0"})
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "chat", "messages": [USER]})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "30" and r.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert r.json() == {"error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                                  "code": "rate_limit_error"}}


@pytest.mark.parametrize("reported, details", [
    ({}, None),  # Anthropic said nothing of its cache: neither does the OpenAI usage
    ({"cache_read_input_tokens": 0}, {"cached_tokens": 0}),  # 0 stays 0
    ({"cache_creation_input_tokens": 40}, {"cache_write_tokens": 40}),
])
def test_cache_fields_anthropic_omitted_stay_absent(reported, details, upstream, make_gateway):
    gateway = make_gateway(_config(upstream.url))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    usage = {"input_tokens": 10, "output_tokens": 3, **reported}
    upstream.json({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                   "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": usage}, times=1)
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=[USER])
    got = orjson.loads(raw.content)["usage"]
    assert got.get("prompt_tokens_details") == details
    upstream.sse([named_sse_event({"type": "message_start", "message": {
                      "id": "m", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
                      "usage": usage}}),
                  named_sse_event({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                   "usage": {"output_tokens": 3}}),
                  named_sse_event({"type": "message_stop"})], times=1)
    with client.chat.completions.with_streaming_response.create(
            model="chat", messages=[USER], stream=True, stream_options={"include_usage": True}) as r:
        events = parse_events(b"".join(r.iter_bytes()))
    assert events[-2]["usage"].get("prompt_tokens_details") == details
    assert got["prompt_tokens"] == events[-2]["usage"]["prompt_tokens"] == 10 + sum(reported.values())
