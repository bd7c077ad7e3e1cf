"""End to end with the official OpenAI SDK: the gateway in front of a fake Anthropic upstream and
a fake Azure OpenAI upstream, both on loopback."""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.fake_upstream import named_sse_event

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
]
ASK = [{"role": "user", "content": "Weather and local time in Paris?"}]


def anthropic_config(url: str) -> str:
    return f"""
backends:
  claude:
    type: anthropic
    base_url: {url}
    api_key: sk-ant-backend
    default_max_tokens: 512
models:
  claude-chat:
    targets: [{{backend: claude, model: claude-sonnet-4-5}}]
    retry: {{attempts: 1}}
telemetry: {{enabled: false}}
"""


def azure_config(root: str) -> str:
    return f"""
backends:
  az:
    type: azure
    base_url: {root}
    api_key: az-backend-key
    api_version: "2024-10-21"  # quoted: YAML reads a bare date as a date
models:
  gpt-4o:
    targets: [{{backend: az, model: gpt-4o-prod}}]
  embed:
    targets: [{{backend: az, model: embed-prod}}]
telemetry: {{enabled: false}}
"""


def sdk(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="client-key", max_retries=0, timeout=10)


def tool_stream_events() -> list[bytes]:
    """Anthropic's stream for a text block and two parallel tool_use blocks."""
    def delta(i, d):
        return named_sse_event({"type": "content_block_delta", "index": i, "delta": d})
    return [
        named_sse_event({"type": "message_start", "message": {
            "id": "msg_e2e", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 300, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0,
                      "output_tokens": 1}}}),
        named_sse_event({"type": "ping"}),
        named_sse_event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        delta(0, {"type": "text_delta", "text": "Checking "}),
        delta(0, {"type": "text_delta", "text": "both."}),
        named_sse_event({"type": "content_block_stop", "index": 0}),
        named_sse_event({"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}}),
        delta(1, {"type": "input_json_delta", "partial_json": "{\"ci"}),
        delta(1, {"type": "input_json_delta", "partial_json": "ty\": \"Paris\"}"}),
        named_sse_event({"type": "content_block_stop", "index": 1}),
        named_sse_event({"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {}}}),
        delta(2, {"type": "input_json_delta", "partial_json": "{\"city\": "}),
        delta(2, {"type": "input_json_delta", "partial_json": "\"Paris\"}"}),
        named_sse_event({"type": "content_block_stop", "index": 2}),
        named_sse_event({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                         "usage": {"output_tokens": 58}}),
        named_sse_event({"type": "message_stop"}),
    ]


def recut(events: list[bytes], size: int) -> list[bytes]:
    whole = b"".join(events)
    return [whole[i:i + size] for i in range(0, len(whole), size)]


@pytest.mark.parametrize("include_usage", [True, False])
def test_sdk_streams_two_parallel_tool_calls_from_anthropic(upstream, make_gateway, include_usage):
    gateway = make_gateway(anthropic_config(upstream.url))
    upstream.sse(recut(tool_stream_events(), 61), chunk_delay_s=0.001)
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = sdk(gateway).chat.completions.create(model="claude-chat", messages=ASK, tools=TOOLS, stream=True,
                                                  **extra)
    calls: dict[int, dict] = {}
    text, finish, usage, roles = "", None, None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            if delta.role:
                roles.append(delta.role)
            text += delta.content or ""
            for tc in delta.tool_calls or ():
                slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
            finish = choice.finish_reason or finish
    assert roles == ["assistant"]
    assert text == "Checking both."
    assert finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert calls[0]["id"] == "toolu_A" and calls[0]["name"] == "get_weather"
    assert calls[1]["id"] == "toolu_B" and calls[1]["name"] == "get_time"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"} == json.loads(calls[1]["arguments"])
    if include_usage:
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (400, 58, 458)
        assert usage.prompt_tokens_details.cached_tokens == 100
    else:
        assert usage is None

    sent = upstream.last
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-backend" and sent.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in sent.headers and "client-key" not in json.dumps(sent.headers)
    body = sent.json()
    assert body["model"] == "claude-sonnet-4-5" and body["stream"] is True and body["max_tokens"] == 512
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert "stream_options" not in body


def test_sdk_tool_round_trip_with_anthropic(upstream, make_gateway):
    gateway = make_gateway(anthropic_config(upstream.url))
    client = sdk(gateway)
    upstream.json({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                   "content": [{"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"city": "Paris"}},
                               {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {"city": "Paris"}}],
                   "stop_reason": "tool_use", "usage": {"input_tokens": 300, "output_tokens": 50}}, times=1)
    first = client.chat.completions.create(model="claude-chat", messages=ASK, tools=TOOLS, max_tokens=200)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.content is None
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("toolu_A", "get_weather", {"city": "Paris"}), ("toolu_B", "get_time", {"city": "Paris"})]

    upstream.json({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                   "content": [{"type": "text", "text": "18°C and 14:05."}], "stop_reason": "end_turn",
                   "usage": {"input_tokens": 400, "output_tokens": 8}})
    follow_up = ASK + [message.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": "toolu_A", "content": "18°C"},
        {"role": "tool", "tool_call_id": "toolu_B", "content": "14:05"}]
    second = client.chat.completions.create(model="claude-chat", messages=follow_up, tools=TOOLS)
    assert second.choices[0].message.content == "18°C and 14:05."
    turns = upstream.last.json()["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["type"] for b in turns[1]["content"]] == ["tool_use", "tool_use"]
    assert turns[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_A", "content": "18°C"},
                                   {"type": "tool_result", "tool_use_id": "toolu_B", "content": "14:05"}]


def test_sdk_sees_anthropic_errors_as_openai_errors(upstream, make_gateway):
    gateway = make_gateway(anthropic_config(upstream.url))
    client = sdk(gateway)
    upstream.json({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529,
                  times=1)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="claude-chat", messages=ASK)
    assert info.value.status_code == 503 and info.value.code == "overloaded_error"

    with pytest.raises(openai.BadRequestError, match="n=3"):
        client.chat.completions.create(model="claude-chat", messages=ASK, n=3)
    assert len(upstream.received) == 1  # the refused request never left the gateway

    upstream.sse([named_sse_event({"type": "message_start", "message": {"id": "m", "model": "c", "usage": {}}}),
                  named_sse_event({"type": "error", "error": {"type": "api_error", "message": "boom"}})])
    stream = client.chat.completions.create(model="claude-chat", messages=ASK, stream=True)
    with pytest.raises(openai.APIError, match="boom"):
        for _ in stream:
            pass


# --- Azure OpenAI -------------------------------------------------------------------------------
def _azure_chat(content: str = "Hi from Azure") -> dict:
    return {"id": "chatcmpl-az", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-11-20",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
                         "content_filter_results": {}}],
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


def _assert_azure_request(got, deployment: str, endpoint: str) -> None:
    assert got.path == f"/openai/deployments/{deployment}/{endpoint}"
    assert got.query == "api-version=2024-10-21"
    assert got.headers["api-key"] == "az-backend-key"
    assert "Authorization" not in got.headers and "client-key" not in json.dumps(got.headers)


def test_sdk_through_azure_deployment(upstream, make_gateway):
    root = upstream.url[: -len("/v1")]
    gateway = make_gateway(azure_config(root))
    client = sdk(gateway)
    upstream.json(_azure_chat(), times=1)
    out = client.chat.completions.create(model="gpt-4o", messages=ASK)
    assert out.choices[0].message.content == "Hi from Azure"
    _assert_azure_request(upstream.last, "gpt-4o-prod", "chat/completions")
    assert upstream.last.json()["model"] == "gpt-4o-prod"

    chunk = {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-11-20"}
    events = [{"choices": [], "created": 0, "id": "", "model": "", "object": "",
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]},
              {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
               "usage": None},
              {**chunk, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}], "usage": None},
              {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
              {**chunk, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}]
    upstream.sse([b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"], times=1)
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=ASK, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi"
    assert all(c.usage is None for c in chunks)  # not asked for: hidden
    _assert_azure_request(upstream.last, "gpt-4o-prod", "chat/completions")
    assert upstream.last.json()["stream_options"] == {"include_usage": True}

    upstream.json({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}],
                   "model": "text-embedding-3-small", "usage": {"prompt_tokens": 1, "total_tokens": 1}}, times=1)
    emb = client.embeddings.create(model="embed", input="hello")
    assert emb.data[0].embedding == [0.5, -0.5]
    _assert_azure_request(upstream.last, "embed-prod", "embeddings")

    upstream.json({"error": {"message": "The response was filtered", "type": None, "param": "prompt",
                             "code": "content_filter", "status": 400}}, status=400, times=1)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o", messages=ASK)
    assert info.value.code == "content_filter"
