"""The inbound translators (``/v1/messages``, ``/v1/responses`` on a chat-only backend) facing
backends that answer oddly, with the official ``anthropic`` and ``openai`` SDKs as clients: a
JSON answer to a stream request, answers with no choice or wrongly typed fields (a 502 in the
caller's protocol, or the readable parts; never a 500), parallel tool calls whose deltas
interleave, and request fields of the wrong type (a 400 naming the parameter)."""

from __future__ import annotations

import anthropic
import openai
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
