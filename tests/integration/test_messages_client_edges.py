"""``/v1/messages`` as the ``anthropic`` SDK and the tools built on it (Claude Code) use it, at the
edges: the ``request-id`` header the SDK reads, Anthropic's ``ping`` event, a backend that answers
JSON to a stream request, versioned prompts, what Claude Code sends (``?beta=true``, images in
tool results), tool calls without an index, streams that end badly, chain models, failover to
Anthropic; raw events checked against the SDK's own types. Tokens, limits and routing:
``test_messages_accounting``."""

from __future__ import annotations

import anthropic
import httpx
import orjson
import pytest
from pydantic import TypeAdapter

from tests.support.fake_upstream import FakeUpstream, chat_chunk, named_sse_event, sse_event
from tests.support.gateway import gateway_config, serve
from tests.support.polling import wait_for
from tests.support.prompts import GREET, write_prompts
from tests.support.telemetry import chdb_dsn, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select

USER = [{"role": "user", "content": "hello there"}]
WEATHER = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
CHAT = {"id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me look.", "reasoning_content": "Weather needs a tool.",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}
STREAM = [sse_event(chat_chunk(role=True)), sse_event(chat_chunk("Hel")), sse_event(chat_chunk("lo")),
          sse_event(chat_chunk(finish="stop")),
          sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})),
          b"data: [DONE]\n\n"]
EVENT = TypeAdapter(anthropic.types.RawMessageStreamEvent)


def client(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)


def raw_events(gw, body: dict) -> list[dict]:
    """The answer's events as sent, each ``event:`` name checked against its payload and every
    payload but ``ping`` validated with the SDK's own event types."""
    r = httpx.post(f"{gw.url}/v1/messages", json={**body, "stream": True}, timeout=30,
                   headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    events = []
    for block in r.text.split("\n\n"):
        if not block.strip():
            continue
        name, data = block.split("\n")
        payload = orjson.loads(data.removeprefix("data: "))
        assert name == f"event: {payload['type']}"
        if payload["type"] != "ping":
            EVENT.validate_python(payload)
        events.append(payload)
    return events


def kinds(events: list[dict]) -> list[str]:
    return [e["delta"]["type"] if e["type"] == "content_block_delta" else e["type"] for e in events]


# --- request-id -----------------------------------------------------------------------------------
def test_answers_carry_request_id_for_the_sdk(upstream, gateway):
    upstream.json(CHAT)
    raw = client(gateway).messages.with_raw_response.create(model="gpt-test", max_tokens=64, messages=USER)
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    assert raw.parse()._request_id == raw.headers["x-request-id"]
    upstream.sse(STREAM)
    with client(gateway).messages.stream(model="gpt-test", max_tokens=64, messages=USER) as stream:
        stream.get_final_message()
        assert stream.request_id == stream.response.headers["x-request-id"]
    with pytest.raises(anthropic.NotFoundError) as missing:
        client(gateway).messages.create(model="no-such-model", max_tokens=5, messages=USER)
    assert missing.value.request_id == missing.value.response.headers["x-request-id"]
    assert "request-id" not in httpx.post(f"{gateway.url}/v1/chat/completions", json={
        "model": "gpt-test", "messages": USER}, timeout=30).headers  # OpenAI's clients read x-request-id


# --- the event sequence ---------------------------------------------------------------------------
def test_translated_stream_pings_after_the_first_block_starts(upstream, gateway):
    """Anthropic's own streams send one ``ping`` after the first ``content_block_start``."""
    upstream.sse(STREAM)
    events = raw_events(gateway, {"model": "gpt-test", "max_tokens": 64, "messages": USER})
    assert kinds(events) == ["message_start", "content_block_start", "ping", "text_delta", "text_delta",
                             "content_block_stop", "message_delta", "message_stop"]
    upstream.sse([sse_event(chat_chunk(finish="stop")), b"data: [DONE]\n\n"])  # no content: no block, no ping
    assert kinds(raw_events(gateway, {"model": "gpt-test", "max_tokens": 64, "messages": USER})) == [
        "message_start", "message_delta", "message_stop"]


def test_json_answer_to_a_stream_request_is_sent_as_events(upstream, gateway):
    """A backend that ignores ``stream: true`` and answers JSON: the client asked for events and
    gets them (the SDK's stream would otherwise see nothing)."""
    upstream.json(CHAT)
    events = raw_events(gateway, {"model": "gpt-test", "max_tokens": 64, "messages": USER, "tools": [WEATHER]})
    assert kinds(events) == ["message_start", "content_block_start", "ping", "thinking_delta", "content_block_stop",
                             "content_block_start", "text_delta", "content_block_stop",
                             "content_block_start", "input_json_delta", "content_block_stop",
                             "message_delta", "message_stop"]
    assert [e["index"] for e in events if e["type"] == "content_block_start"] == [0, 1, 2]
    with client(gateway).messages.stream(model="gpt-test", max_tokens=64, messages=USER, tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[2].input == {"city": "Oslo"} and final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 7)


# --- versioned prompts -------------------------------------------------------------------------------
def prompt_gateway(make_gateway, tmp_path, chat_url: str, claude_url: str):
    prompts = write_prompts(tmp_path / "prompts", greet=GREET)
    return make_gateway(f"""
backends:
  fake: {{type: openai, base_url: "{chat_url}", api_key: sk-backend-secret}}
  claude: {{type: anthropic, base_url: "{claude_url}", api_key: sk-ant-backend}}
models:
  gpt-test: {{targets: [{{backend: fake, model: up-model}}]}}
  claude: {{targets: [{{backend: claude, model: claude-x}}]}}
  greeter: {{targets: [{{backend: fake, model: up-model}}], prompt: greet@staging}}
prompts: {{dir: "{prompts}"}}
""")


def test_prompts_are_injected_in_anthropic_form(make_gateway, tmp_path):
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "end_turn",
               "stop_sequence": None, "content": [{"type": "text", "text": "hi"}],
               "usage": {"input_tokens": 3, "output_tokens": 1}}
    with FakeUpstream() as chat, FakeUpstream() as claude:
        gw = prompt_gateway(make_gateway, tmp_path, chat.url, claude.url)
        chat.json({**CHAT, "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "hi"}}]})
        claude.json(message)
        c = client(gw)
        greet = {"x-gateway-prompt": "greet", "x-gateway-prompt-variables": '{"name": "Ann"}'}
        raw = c.messages.with_raw_response.create(model="gpt-test", max_tokens=9, messages=USER, system="caller system",
                                                  extra_headers=greet)
        assert raw.headers["x-gateway-prompt-version"] == "1"
        sent = chat.last.json()
        assert sent["messages"] == [{"role": "system", "content": "v1: greet Ann\n\ncaller system"}, *USER]
        assert sent["temperature"] == 0.1 and sent["max_completion_tokens"] == 9  # the caller's limit wins
        # Natively to Anthropic: the prompt goes into `system`, the caller's blocks kept after it.
        c.messages.create(model="claude", max_tokens=9, messages=USER, extra_headers=greet,
                          system=[{"type": "text", "text": "caller", "cache_control": {"type": "ephemeral"}}])
        sent = claude.last.json()
        assert sent["system"] == [{"type": "text", "text": "v1: greet Ann"},
                                  {"type": "text", "text": "caller", "cache_control": {"type": "ephemeral"}}]
        assert sent["messages"] == USER and sent["temperature"] == 0.1 and "prompt" not in sent
        # replace_system: the caller's system goes; the prompt's user turn comes first.
        c.messages.create(model="claude", max_tokens=9, messages=USER, system="caller system",
                          extra_body={"prompt": {"id": "greet", "version": 3}})
        sent = claude.last.json()
        assert sent["system"] == "v3 static"
        assert sent["messages"] == [{"role": "user", "content": "example question"}, *USER]
        # The model's own prompt.
        c.messages.create(model="greeter", max_tokens=9, messages=USER,
                          extra_body={"prompt": {"variables": {"name": "Cy"}}})
        assert chat.last.json()["messages"][0] == {"role": "system", "content": "v2: greet Cy 2 times"}
        # count_tokens counts what /v1/messages would send: the prompt too, without its params.
        claude.json({"input_tokens": 42})
        c.messages.count_tokens(model="claude", messages=USER, extra_headers=greet)
        assert claude.last.json() == {"model": "claude-x", "messages": USER, "system": "v1: greet Ann"}
        bare = c.messages.count_tokens(model="gpt-test", messages=USER).input_tokens
        assert c.messages.count_tokens(model="gpt-test", messages=USER, extra_headers=greet).input_tokens > bare
        with pytest.raises(anthropic.BadRequestError) as bad:
            c.messages.create(model="gpt-test", max_tokens=9, messages=USER, extra_headers={"x-gateway-prompt": "nope"})
        assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"


# --- what Claude Code sends ---------------------------------------------------------------------------
def test_tool_calls_without_an_index_are_separate_blocks(upstream, gateway):
    """Some OpenAI-compatible servers stream whole tool calls with an ``id`` and no ``index``."""
    def delta(call: dict) -> bytes:
        chunk = chat_chunk()
        chunk["choices"][0]["delta"] = {"tool_calls": [call]}
        return sse_event(chunk)
    upstream.sse([delta({"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":'}}),
                  delta({"function": {"arguments": '"Oslo"}'}}),  # no id: the same call goes on
                  delta({"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}}),
                  sse_event(chat_chunk(finish="tool_calls")), b"data: [DONE]\n\n"])
    with client(gateway).messages.stream(model="gpt-test", max_tokens=64, messages=USER, tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    assert [(b.id, b.name, b.input) for b in final.content] == [
        ("call_a", "get_weather", {"city": "Oslo"}), ("call_b", "get_time", {"tz": "CET"})]


def test_the_anthropic_query_string_stays_off_chat_backends(make_gateway):
    """Claude Code posts to ``/v1/messages?beta=true``: a native backend gets it, a chat backend,
    which speaks another API, does not."""
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "end_turn",
               "stop_sequence": None, "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}
    with FakeUpstream() as chat, FakeUpstream() as claude:
        gw = make_gateway(f"""
backends:
  fake: {{type: openai, base_url: "{chat.url}", api_key: sk-backend-secret}}
  claude: {{type: anthropic, base_url: "{claude.url}", api_key: sk-ant-backend}}
models:
  gpt-test: {{targets: [{{backend: fake, model: up-model}}]}}
  claude: {{targets: [{{backend: claude, model: claude-x}}]}}
""")
        chat.json({**CHAT, "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "hi"}}]})
        claude.json(message)
        for model in ("gpt-test", "claude"):
            r = httpx.post(f"{gw.url}/v1/messages?beta=true", timeout=30, headers={"x-api-key": "k"},
                           json={"model": model, "max_tokens": 5, "messages": USER})
            assert r.status_code == 200, r.text
        assert (chat.last.path, chat.last.query) == ("/v1/chat/completions", "")
        assert (claude.last.path, claude.last.query) == ("/v1/messages", "beta=true")


# --- a stream that does not end well ---------------------------------------------------------------
def test_client_leaving_and_backend_failing_mid_stream(upstream, make_gateway, tmp_path, tdb):  # noqa: F811
    gw = make_gateway(gateway_config(upstream.url, extra=telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")))
    upstream.sse(STREAM, pause_after=2)  # two chunks, then the backend waits
    with httpx.stream("POST", f"{gw.url}/v1/messages", timeout=30, headers={"x-api-key": "k"},
                      json={"model": "gpt-test", "max_tokens": 64, "messages": USER, "stream": True}) as r:
        first = next(r.iter_raw())
    assert first.startswith(b"event: message_start")
    wait_for(lambda: upstream.disconnects, what="the gateway to drop the backend when the client left")
    upstream.resume()
    upstream.sse(STREAM, abort_after=3)  # the backend's connection breaks mid-answer
    with pytest.raises(anthropic.APIStatusError) as info:
        with client(gw).messages.stream(model="gpt-test", max_tokens=64, messages=USER) as stream:
            stream.get_final_message()
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "api_error"
    flush(gw)
    rows = select(tdb, "SELECT status_code, error_type, truncated FROM llm_requests ORDER BY ts_start")
    assert [(r["status_code"], bool(r["truncated"])) for r in rows] == [(499, True), (502, True)]


def test_images_in_tool_results_follow_as_a_user_turn(upstream, gateway):
    """Claude Code's Read tool answers an image file with an image block in the ``tool_result``;
    a chat ``tool`` message holds only text, so the image leads the user turn after it."""
    upstream.json({**CHAT, "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "A cat."}}]})
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    client(gateway).messages.create(model="gpt-test", max_tokens=64, tools=[WEATHER], messages=[
        *USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": [{"type": "text", "text": "cat.png"}, image]},
                                     {"type": "text", "text": "What is it?"}]}])
    assert upstream.last.json()["messages"][2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "cat.png"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                                     {"type": "text", "text": "What is it?"}]}]


def test_a_chain_model_is_refused_rather_than_answered_in_chat_form(upstream, tmp_path):
    """A chain's steps are chat requests and its answer a chat completion, which an Anthropic
    client cannot read: a 400 in its shape, nothing run."""
    (tmp_path / "prompts").mkdir()
    (tmp_path / "chains").mkdir()
    (tmp_path / "prompts" / "ask.yaml").write_text(
        'versions:\n  - version: 1\n    messages: [{role: system, content: "Be brief."}]\nlabels: {production: 1}\n')
    (tmp_path / "chains" / "one.yaml").write_text(
        "version: 1\nsteps:\n  - {name: only, prompt: ask@production, model: gpt-test, include_messages: true}\n")
    (tmp_path / "gateway.yaml").write_text(gateway_config(upstream.url, extra="  one: {chain: one}\n"))
    with serve(path=tmp_path / "gateway.yaml") as gw:
        with pytest.raises(anthropic.BadRequestError) as info:
            client(gw).messages.create(model="one", max_tokens=5, messages=USER)
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "/v1/chat/completions" in info.value.body["error"]["message"] and upstream.received == []


def test_tool_choice_without_tools_is_not_sent(upstream, gateway):
    """OpenAI refuses ``tool_choice`` and ``parallel_tool_calls`` without ``tools``; Anthropic's
    clients send a choice whatever the tool list."""
    upstream.json(CHAT)
    client(gateway).messages.create(model="gpt-test", max_tokens=64, messages=USER,
                                    tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert not {"tool_choice", "parallel_tool_calls", "tools"} & set(upstream.last.json())


def test_failover_from_a_chat_backend_to_anthropic_keeps_the_clients_request(make_gateway):
    """Translated first, native second: the native target gets the client's own body, beta header
    and query, and the answer is Anthropic's own stream (its ping included)."""
    events = [{"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "From Claude"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 3}}, {"type": "message_stop"}]
    with FakeUpstream() as chat, FakeUpstream() as claude:
        gw = make_gateway(f"""
backends:
  fake: {{type: openai, base_url: "{chat.url}", api_key: sk-backend-secret}}
  claude: {{type: anthropic, base_url: "{claude.url}", api_key: sk-ant-backend}}
models:
  mixed:
    targets: [{{backend: fake, model: up-model}}, {{backend: claude, model: claude-x}}]
    strategy: priority
    fallback_on: [5xx, not_found]
routing:
  retry: {{attempts: 1}}
""")
        claude.sse([named_sse_event(e) for e in events])
        body = {"model": "mixed", "max_tokens": 64, "stream": True, "messages": USER,
                "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]}
        for status, error in ((503, {"message": "overloaded"}), (404, {"message": "The model `up-model` does not "
                                                                       "exist.", "code": "model_not_found"})):
            chat.json({"error": error}, status=status)
            r = httpx.post(f"{gw.url}/v1/messages?beta=true", json=body, timeout=30,
                           headers={"x-api-key": "k", "anthropic-beta": "prompt-caching-2024-07-31"})
            assert r.status_code == 200 and r.headers["x-gateway-backend"] == "claude"
            assert r.content == b"".join(named_sse_event(e) for e in events)
            assert claude.last.json() == {**body, "model": "claude-x"} and claude.last.query == "beta=true"
            assert claude.last.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
            assert chat.last.query == "" and "anthropic-beta" not in chat.last.headers
