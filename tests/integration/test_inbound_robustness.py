"""The inbound translators (``/v1/messages``, ``/v1/responses`` on a chat-only backend) facing
backends that answer oddly, with the official ``anthropic`` and ``openai`` SDKs as clients: a
JSON answer to a stream request, answers with no choice or wrongly typed fields (a 502 in the
caller's protocol, or the readable parts; never a 500), parallel tool calls whose deltas
interleave, and request fields of the wrong type (a 400 naming the parameter)."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest

from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.gateway import gateway_config

USER = [{"role": "user", "content": "hello there"}]
CHAT = {"id": "chatcmpl-7", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me look.",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture
def gw(upstream, make_gateway):
    """A gateway whose ``gpt-test`` is the fake chat upstream, ``/v1/responses`` translated."""
    return make_gateway(gateway_config(upstream.url, backend_extra="    responses: translate"))


def openai_client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)


def anthropic_client(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)


# --- a JSON answer to a stream request ------------------------------------------------------------
def test_responses_stream_from_a_json_answer_is_the_whole_event_lifecycle(upstream, gw):
    """A backend that ignores ``stream: true``: the client asked for events and gets them."""
    upstream.json(CHAT)
    events = list(openai_client(gw).responses.create(model="gpt-test", input="hi", tools=[TOOL], stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.function_call_arguments.done" in kinds
    final = events[-1].response
    assert final.output_text == "Let me look." and final.usage.input_tokens == 12
    assert [(i.type, getattr(i, "arguments", None)) for i in final.output] == [
        ("message", None), ("function_call", '{"city":"Oslo"}')]
    assert [e.sequence_number for e in events] == list(range(len(events)))


# --- answers without a choice ---------------------------------------------------------------------
@pytest.mark.parametrize("answer", [{"id": "x", "object": "chat.completion", "choices": []}, {"id": "x"}])
@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_without_a_choice_is_a_502_on_responses(upstream, gw, answer, stream):
    upstream.json(answer)
    with pytest.raises(openai.APIStatusError) as failed:
        result = openai_client(gw).responses.create(model="gpt-test", input="hi", stream=stream)
        list(result) if stream else None
    assert failed.value.status_code == 502
    assert "something other than a chat completion" in failed.value.body["message"]


# --- wrongly typed answers ------------------------------------------------------------------------
# A backend's answer of the wrong types throughout: nothing in it can be read but the choice itself.
GARBLED = {"choices": [{"message": {"content": 7, "tool_calls": "x"}, "finish_reason": 3}],
           "usage": {"prompt_tokens": "a"}}
# Readable parts among unreadable ones: the text, one tool call (its id a number), a completion count.
MIXED = {"id": 5, "model": ["m"], "created": "soon",
         "choices": [{"message": {"content": "Hi", "refusal": 1, "tool_calls": [
             "x", {"id": 5, "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
             {"id": "call_2", "function": "nope"}]}, "finish_reason": ["stop"]}],
         "usage": {"prompt_tokens": "a", "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": "b"},
                   "completion_tokens_details": 4}}
# The same, streamed: the stream's fields of the wrong type.
MIXED_STREAM = [sse_event({"id": 5, "model": 9, "choices": [{"index": 0, "delta": {"content": 7, "tool_calls": "x"}}]}),
                sse_event(chat_chunk("Hi")),
                sse_event({"choices": [{"index": 0, "delta": {"tool_calls": [
                    "x", {"index": 0, "id": 5, "function": {"name": 6, "arguments": 7}},
                    {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}}]}),
                sse_event({"choices": [{"index": 0, "delta": {}, "finish_reason": ["stop"]}], "usage": "many"}),
                sse_event(chat_chunk(choices=False, usage={"prompt_tokens": "a", "completion_tokens": 3})),
                b"data: [DONE]\n\n"]


@pytest.mark.parametrize("stream", [False, True])
def test_wrongly_typed_answers_are_read_for_what_they_say_on_responses(upstream, gw, stream):
    client = openai_client(gw)

    def ask():
        if not stream:
            return client.responses.create(model="gpt-test", input="hi")
        events = list(client.responses.create(model="gpt-test", input="hi", stream=True))
        assert [e.sequence_number for e in events] == list(range(len(events)))
        return events[-1].response

    upstream.json(GARBLED)  # streamed: a backend that ignored ``stream``
    empty = ask()
    assert (empty.status, empty.output, empty.usage) == ("completed", [], None)
    upstream.json(MIXED)
    mixed = ask()
    assert mixed.output_text == "Hi" and mixed.usage.output_tokens == 3 and mixed.usage.input_tokens == 0
    assert [(i.type, getattr(i, "name", None)) for i in mixed.output] == [
        ("message", None), ("function_call", "get_weather"), ("function_call", "")]
    assert mixed.output[1].arguments == '{"city":"Oslo"}' and mixed.output[1].call_id.startswith("call_")
    if stream:
        upstream.sse(MIXED_STREAM)
        said = ask()
        assert said.output_text == "Hi" and said.usage.output_tokens == 3 and said.status == "completed"
        assert [(i.type, i.name, i.arguments) for i in said.output[1:]] == [
            ("function_call", "get_weather", '{"city":"Oslo"}')]


@pytest.mark.parametrize("stream", [False, True])
def test_wrongly_typed_answers_are_read_for_what_they_say_on_messages(upstream, gw, stream):
    client = anthropic_client(gw)

    def ask():
        if not stream:
            return client.messages.create(model="gpt-test", max_tokens=64, messages=USER)
        with client.messages.stream(model="gpt-test", max_tokens=64, messages=USER) as events:
            return events.get_final_message()

    upstream.json(GARBLED)  # streamed: a backend that ignored ``stream``
    empty = ask()
    assert (empty.content, empty.stop_reason, empty.usage.input_tokens, empty.usage.output_tokens) == (
        [], "end_turn", 0, 0)
    upstream.json(MIXED)
    mixed = ask()
    assert [(b.type, getattr(b, "name", None), getattr(b, "input", None)) for b in mixed.content] == [
        ("text", None, None), ("tool_use", "get_weather", {"city": "Oslo"}), ("tool_use", "", {})]
    assert mixed.content[0].text == "Hi" and mixed.usage.output_tokens == 3 and mixed.usage.input_tokens == 0
    if stream:
        upstream.sse(MIXED_STREAM)
        said = ask()
        assert [(b.type, getattr(b, "name", None), getattr(b, "input", None)) for b in said.content] == [
            ("text", None, None), ("tool_use", "get_weather", {"city": "Oslo"})]
        assert said.usage.output_tokens == 3 and said.stop_reason == "end_turn"


# --- parallel tool calls whose deltas interleave --------------------------------------------------
def _interleaved(indexed: bool) -> list[bytes]:
    """Call 1 begins before call 0's arguments come; told apart by ``index``, or (Gemini-like
    servers) by the id every delta carries."""
    def delta(n: int, call_id: str, arguments: str, name: str | None = None) -> bytes:
        call = {"id": call_id, "function": {"arguments": arguments, **({"name": name} if name else {})}}
        chunk = chat_chunk()
        chunk["choices"][0]["delta"] = {"tool_calls": [{**call, "index": n} if indexed else call]}
        return sse_event(chunk)
    return [sse_event(chat_chunk(role=True)), delta(0, "call_a", "", "get_weather"),
            delta(1, "call_b", '{"tz"', "get_time"), delta(0, "call_a", '{"city": "Oslo"}'),
            delta(1, "call_b", ': "CET"}'), sse_event(chat_chunk(finish="tool_calls")), b"data: [DONE]\n\n"]


CALLS = [("call_a", "get_weather", {"city": "Oslo"}), ("call_b", "get_time", {"tz": "CET"})]


@pytest.mark.parametrize("indexed", [True, False])
def test_interleaved_tool_calls_keep_every_argument_on_messages(upstream, gw, indexed):
    upstream.sse(_interleaved(indexed))
    with anthropic_client(gw).messages.stream(model="gpt-test", max_tokens=64, messages=USER) as stream:
        final = stream.get_final_message()
    assert [(b.id, b.name, b.input) for b in final.content] == CALLS and final.stop_reason == "tool_use"


@pytest.mark.parametrize("indexed", [True, False])
def test_interleaved_tool_calls_keep_every_argument_on_responses(upstream, gw, indexed):
    upstream.sse(_interleaved(indexed))
    events = list(openai_client(gw).responses.create(model="gpt-test", input="hi", stream=True))
    assert [(i.call_id, i.name, orjson.loads(i.arguments)) for i in events[-1].response.output] == CALLS


# --- request fields of the wrong type -------------------------------------------------------------
CALLED = [{"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}]


@pytest.mark.parametrize(("fields", "param"), [
    ({"text": {"format": "json"}}, "text.format"),
    ({"text": "json"}, "text"),
    ({"reasoning": "high"}, "reasoning"),
    ({"tools": [TOOL], "tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"input": [*CALLED, {"type": "function_call_output", "output": "cold"}]}, "input[1].call_id"),
    ({"metadata": "mine"}, "metadata"),
    ({"stream": "yes"}, "stream"),
    ({"tools": [{"type": "function", "parameters": {"type": "object"}}]}, "tools[0].name"),
])
def test_responses_refuses_fields_of_the_wrong_type_naming_them(upstream, gw, fields, param):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(gw).responses.create(model="gpt-test", extra_body={"input": "hi", **fields})
    assert refused.value.body["param"] == param and param in refused.value.body["message"]
    assert upstream.received == []


WEATHER = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
CALL_TURN = [*USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                       "input": "Oslo"}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"}]}]


@pytest.mark.parametrize(("fields", "param"), [
    ({"tool_choice": "any"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "any"}, "tool_choice"),
    ({"stop_sequences": "END"}, "stop_sequences"),
    ({"stop_sequences": ["END", 7]}, "stop_sequences.1"),
    ({"metadata": "mine"}, "metadata"),
    ({"tools": [{"input_schema": {"type": "object"}}]}, "tools.0.name"),
    ({"messages": CALL_TURN, "tools": [WEATHER]}, "messages.1.content.0.input"),
])
def test_messages_refuses_fields_of_the_wrong_type_naming_them(upstream, gw, fields, param):
    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client(gw).messages.create(model="gpt-test", max_tokens=64, messages=USER,
                                             extra_body=fields)
    error = refused.value.body
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(f"{param}:")
    assert upstream.received == []
