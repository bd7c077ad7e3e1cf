"""The Responses ⇄ Chat Completions translators, checked against the openai SDK's own types:
every answer validates as a ``Response``, every streamed event as a ``ResponseStreamEvent``
and the SDK's stream accumulator rebuilds from the events the same response the JSON
translation gives."""

from __future__ import annotations

import random

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.chat import CompletionCreateParams
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.core.context import RequestContext
from gateway.core.errors import InvalidRequestError, StreamTruncatedError
from gateway.core.sse import SSESplitter, event_data
from gateway.inbound.responses.observe import ResponsesTee
from gateway.inbound.responses.request import to_chat
from gateway.inbound.responses.response import from_chat
from gateway.inbound.responses.stream import ResponsesEncoder
from tests.support.fake_upstream import chat_chunk, sse_event

RESPONSE = TypeAdapter(Response)
EVENT = TypeAdapter(ResponseStreamEvent)
CHAT_REQUEST = TypeAdapter(CompletionCreateParams)
TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True}
USAGE = {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39,
         "prompt_tokens_details": {"cached_tokens": 10}, "completion_tokens_details": {"reasoning_tokens": 4}}


def test_request_every_field_maps_to_chat():
    body = {
        "model": "m", "instructions": "Be brief.", "temperature": 0.2, "top_p": 0.9, "max_output_tokens": 50,
        "reasoning": {"effort": "low"}, "metadata": {"team": "a"}, "store": False, "stream": True,
        "tools": [TOOL], "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
        "input": [
            {"role": "developer", "content": "Answer in JSON."},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Weather here?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "cold"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "warm"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Oslo is cold.", "annotations": []}]},
        ],
    }
    chat = to_chat(body, history=[{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"}])
    CHAT_REQUEST.validate_python(chat)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief.\n\nAnswer in JSON."},  # a developer item joins the instructions
        {"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "Weather here?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA",
                                                                         "detail": "low"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
        {"role": "tool", "tool_call_id": "call_2", "content": "warm"},
        {"role": "assistant", "content": "Oslo is cold."},
    ]
    assert chat["tools"] == [{"type": "function", "function": {k: TOOL[k] for k in TOOL if k != "type"}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True}}
    assert (chat["max_completion_tokens"], chat["reasoning_effort"], chat["temperature"], chat["top_p"]) == \
        (50, "low", 0.2, 0.9)
    assert chat["parallel_tool_calls"] is False and chat["stream_options"] == {"include_usage": True}
    assert "metadata" not in chat and "store" not in chat and "input" not in chat
    assert to_chat({"model": "m", "input": "hi"}) == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    pdf = {"type": "input_file", "file_data": "data:application/pdf;base64,AA", "filename": "a.pdf"}
    chat = to_chat({"model": "m", "text": {"format": {"type": "json_object"}},
                    "input": [{"role": "user", "content": [pdf, {"type": "input_text", "text": "As JSON."}]}]})
    CHAT_REQUEST.validate_python(chat)
    assert chat["response_format"] == {"type": "json_object"}
    assert chat["messages"][0]["content"] == [{"type": "file", "file": {"file_data": pdf["file_data"],
                                                                        "filename": "a.pdf"}},
                                              {"type": "text", "text": "As JSON."}]


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input[0].content[0].file_id"),
    ({"background": True}, "background"),
    ({"text": {"format": {"type": "grammar"}}}, "text.format.type"),
    ({"input": 3}, "input"),
])
def test_what_chat_cannot_express_is_refused_naming_the_field(body, param):
    with pytest.raises(InvalidRequestError) as caught:
        to_chat({"model": "m", "input": "x", **body})
    assert caught.value.status == 400 and caught.value.param == param


def _completion(message: dict, finish: str = "stop", usage: dict | None = USAGE) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "served",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": usage}


def test_a_completion_becomes_a_response_object():
    request = {"model": "m", "input": "x", "tools": [TOOL], "metadata": {"a": "b"}, "instructions": "hi"}
    chat = _completion({"content": "Checking.", "reasoning_content": "The user wants weather.",
                        "tool_calls": [{"id": "call_9", "type": "function",
                                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
                       finish="tool_calls")
    response = RESPONSE.validate_python(from_chat(chat, request, "resp_1"))
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
    assert response.output_text == "Checking." and response.status == "completed"
    assert response.output[0].content[0].text == "The user wants weather."
    call = response.output[2]
    assert (call.call_id, call.name, call.arguments) == ("call_9", "get_weather", '{"city":"Oslo"}')
    assert (response.model, response.metadata, response.instructions, response.tools[0].name) == \
        ("served", {"a": "b"}, "hi", "get_weather")
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (30, 9, 39)
    assert (usage.input_tokens_details.cached_tokens, usage.output_tokens_details.reasoning_tokens) == (10, 4)
    cut = RESPONSE.validate_python(from_chat(_completion({"content": "Once"}, "length"), request, "resp_2"))
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"


def _chunks_for(message_chunks: list[dict], finish: str) -> list[bytes]:
    out = [sse_event(chat_chunk(role=True, model="served"))]
    for delta in message_chunks:
        chunk = chat_chunk(model="served")
        chunk["choices"][0]["delta"] = delta
        out.append(sse_event(chunk))
    out += [sse_event(chat_chunk(finish=finish, model="served")),
            sse_event(chat_chunk(choices=False, usage=USAGE, model="served")), b"data: [DONE]\n\n"]
    return out


def _encode(reads: list[bytes], request: dict) -> tuple[list, ResponsesEncoder]:
    encoder = ResponsesEncoder(request, "resp_1", 1700000000)
    out = b"".join(encoder.feed(r) for r in reads) + encoder.finish()
    return _events(out), encoder


def _events(out: bytes, first: int = 0) -> list:
    split = SSESplitter()
    raws = split.feed(out)
    assert not split.tail()
    events = []
    for raw in raws:
        payload = orjson.loads(event_data(raw) or b"")
        assert raw.startswith(b"event: " + payload["type"].encode() + b"\n")
        events.append(EVENT.validate_python(payload))
    assert [e.sequence_number for e in events] == list(range(first, first + len(events)))  # one by one
    return events


def _cuts(whole: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(whole)), min(30, len(whole) - 1)))
    return [whole[i:j] for i, j in zip([0, *cuts], [*cuts, len(whole)], strict=True)]


STREAMS = {
    "text": ([{"content": "Hel"}, {"content": "lo"}], "stop"),
    "reasoning then text": ([{"reasoning_content": "Think"}, {"reasoning_content": "ing."}, {"content": "Done."}],
                            "stop"),
    "two tool calls": ([
        {"content": "Let me check."},
        {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]}], "tool_calls"),
    "cut by max tokens": ([{"content": "Once upon"}], "length"),
    "refusal": ([{"refusal": "I can't."}], "stop"),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_streams_tell_the_full_lifecycle_and_rebuild_the_json_answer(name):
    deltas, finish = STREAMS[name]
    request = {"model": "m", "input": "x", "tools": [TOOL], "stream": True}
    whole = b"".join(_chunks_for(deltas, finish))
    for reads in ([whole], _cuts(whole, random.Random(name))):
        events, encoder = _encode(reads, request)
        assert encoder.done
        types = [e.type for e in events]
        assert types[:2] == ["response.created", "response.in_progress"]
        terminal = "response.incomplete" if finish == "length" else "response.completed"
        assert types[-1] == terminal and types.count(terminal) == 1
        state = ResponseStreamState(input_tools=omit, text_format=omit)
        for event in events:
            state.handle_event(event)
        opened = [e.output_index for e in events if e.type == "response.output_item.added"]
        closed = [e.output_index for e in events if e.type == "response.output_item.done"]
        assert opened == list(range(len(opened))) and sorted(closed) == opened
        for e in events:  # every delta belongs to an item that is open
            if hasattr(e, "output_index") and e.type != "response.output_item.added":
                assert e.output_index in opened[:opened.index(e.output_index) + 1]
        final = events[-1].response
        # the same answer as one JSON completion gives
        message: dict = {}
        for delta in deltas:
            for key in ("content", "reasoning_content", "refusal"):
                if key in delta:
                    message[key] = message.get(key, "") + delta[key]
            for call in delta.get("tool_calls", ()):
                calls = message.setdefault("tool_calls", [])
                if call["index"] == len(calls):
                    calls.append({"id": call["id"], "type": "function", "function": {"name": "", "arguments": ""}})
                calls[call["index"]]["function"]["name"] += call["function"].get("name", "")
                calls[call["index"]]["function"]["arguments"] += call["function"].get("arguments", "")
        expected = RESPONSE.validate_python(from_chat(_completion(message, finish), request, "resp_1"))
        assert final.model_dump(exclude={"created_at"}) == expected.model_dump(exclude={"created_at"})


def test_an_error_in_band_or_a_cut_ends_in_response_failed():
    whole = b"".join(_chunks_for([{"content": "Hel"}], "stop")[:2])
    error = sse_event({"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}})
    events, encoder = _encode([whole, error], {"model": "m"})
    assert [e.type for e in events][-2:] == ["error", "response.failed"] and encoder.done
    assert events[-2].code == "overloaded" and events[-1].response.error.message == "overloaded"
    assert events[-1].response.output[0].status == "incomplete"
    # the upstream ended with no finish_reason: the encoder leaves it open, and the relay's
    # observer of the encoded stream ends it
    encoder = ResponsesEncoder({"model": "m"}, "resp_1", 1700000000)
    encoded = encoder.feed(whole) + encoder.finish()
    ctx = RequestContext(request_id="r", endpoint="responses", t_start=0.0, ts_start=0.0)
    tee = ResponsesTee(ctx)
    assert tee.feed(encoded, 0.0) == encoded and not encoder.done and not tee.done
    events = _events(encoded + tee.error_event(StreamTruncatedError("cut")))
    assert [e.type for e in events][-3:] == ["response.output_text.delta", "error", "response.failed"]
    assert events[-2].code == "stream_truncated" and events[-1].response.id == "resp_1"
