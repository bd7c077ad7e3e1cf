"""The conformance fixtures through OpenAI's Responses API: every chat case of every backend type
asked again on ``/v1/responses``, through a real gateway, with the upstream's stream re-cut at
random byte boundaries; and the backend types that serve the Responses API relaying it byte for
byte.

The backends are set to translate (``responses: translate``; ``mock`` and ``anthropic`` always
do), so each gets the chat (or Messages) request the fixture expects and answers what it
scripts. The Responses request is the case's chat request as a Responses client would send it
(cases that use what the Responses API lacks — ``stop``, ``n``, logprobs — have no such form).
What the client receives — every event parsed by the openai SDK's own types, with
``sequence_number`` counting up from 0 — must say what the chat answer says: the same text,
reasoning, tool calls, finish, usage and errors.
"""

from __future__ import annotations

import random
from typing import Any

import httpx
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.core.sse import SSESplitter, event_data, event_name
from gateway.providers import adapter_for
from tests.contract import harness as h
from tests.support.responses import response_events, response_object

RESPONSE = TypeAdapter(Response)
EVENT = TypeAdapter(ResponseStreamEvent)
_SAME = ("model", "temperature", "top_p", "parallel_tool_calls", "user", "stream")
_DROPPED = ("stream_options",)
_FINISH = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _part(part: dict[str, Any]) -> dict[str, Any] | None:
    if part.get("type") == "text":
        return {"type": "input_text", "text": part["text"]}
    if part.get("type") == "image_url":
        image = part["image_url"]
        return {"type": "input_image", "image_url": image["url"], "detail": image.get("detail", "auto")}
    return None


def _input(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    items: list[dict[str, Any]] = []
    for m in messages:
        content = m.get("content")
        if m["role"] == "tool":
            items.append({"type": "function_call_output", "call_id": m["tool_call_id"], "output": content})
        elif m["role"] == "assistant":
            if content:
                items.append({"role": "assistant", "content": content})
            items += [{"type": "function_call", "call_id": c["id"], "name": c["function"]["name"],
                       "arguments": c["function"]["arguments"]} for c in m.get("tool_calls") or ()]
        elif isinstance(content, str):
            items.append({"role": m["role"], "content": content})
        else:
            parts = [_part(p) for p in content]
            if None in parts:
                return None
            items.append({"role": m["role"], "content": parts})
    return items


def _responses_body(chat: dict[str, Any]) -> dict[str, Any] | None:
    """The chat request as a Responses client sends it (None: it has no Responses form)."""
    body: dict[str, Any] = {k: chat[k] for k in _SAME if k in chat}
    for key, value in chat.items():
        if key in _SAME or key in _DROPPED:
            continue
        if key == "messages":
            items = _input(value)
            if items is None:
                return None
            body["input"] = items
        elif key in ("max_tokens", "max_completion_tokens"):
            body["max_output_tokens"] = value
        elif key == "tools":
            body["tools"] = [{"type": "function", **t["function"]} for t in value]
        elif key == "tool_choice":
            body["tool_choice"] = value if isinstance(value, str) else {"type": "function",
                                                                         "name": value["function"]["name"]}
        elif key == "reasoning_effort":
            body["reasoning"] = {"effort": value}
        elif key == "response_format" and value.get("type") == "json_schema":
            body["text"] = {"format": {"type": "json_schema", **value["json_schema"]}}
        else:
            return None  # stop, n, logprobs, seed … : the Responses API has none of them
    return body


def _eligible(case: h.Case) -> bool:
    return (not case.get("skip") and case.endpoint == "chat/completions" and not case.refused
            and (case.adapter == "mock" or "upstream_response" in case.data)
            and _responses_body(case.client_body) is not None)


CASES = [pytest.param(c, id=c.id) for c in h.load_cases() if _eligible(c)]


# --- what an answer says, in either API -----------------------------------------------------------


def _response_json(response: Any) -> dict[str, Any]:
    """A validated ``Response`` → what it says."""
    calls = [i for i in response.output if i.type == "function_call"]
    reasoning = "".join(c.text for i in response.output if i.type == "reasoning" for c in i.content or ())
    usage = response.usage
    if response.status == "incomplete":
        finish = _FINISH[response.incomplete_details.reason]
    else:
        finish = "tool_calls" if calls else "stop"
    return {"text": response.output_text, "reasoning": reasoning, "finish": finish,
            "tools": [(c.call_id, c.name, orjson.loads(c.arguments or "{}")) for c in calls],
            "usage": usage and (usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.output_tokens)}


def _response_events(raw: bytes) -> dict[str, Any]:
    """The Responses event stream → what it says; checks the grammar on the way."""
    splitter = SSESplitter()
    parsed = [(event_name(e), orjson.loads(event_data(e) or b"null")) for e in splitter.feed(raw)]
    assert not splitter.tail(), "unterminated bytes at the end"
    assert all(name is not None and name.decode() == p["type"] for name, p in parsed), parsed
    events = [EVENT.validate_python(p) for _, p in parsed]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"], types
    text, reasoning, args, error = "", "", {}, None
    for e in events:
        if e.type == "response.output_text.delta":
            text += e.delta
        elif e.type == "response.reasoning_text.delta":
            reasoning += e.delta
        elif e.type == "response.function_call_arguments.delta":
            args[e.output_index] = args.get(e.output_index, "") + e.delta
        elif e.type == "error":
            error = e.message
    last = events[-1]
    if last.type in ("response.completed", "response.incomplete"):
        out = _response_json(last.response)
        assert out["text"] == text and out["reasoning"] == reasoning  # the deltas add up to the answer
        assert [orjson.loads(a) for _, a in sorted(args.items())] == [t[2] for t in out["tools"] if t[2]]
        return {**out, "error": None, "complete": True}
    assert types[-2:] == ["error", "response.failed"], types
    return {"text": text, "reasoning": reasoning, "error": error, "complete": False}


# --- the suite ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_responses_inbound(case, upstream, make_gateway):
    root = upstream.url[: -len("/v1")]
    h.script_upstream(upstream, case)
    config = orjson.loads(h.gateway_config(case, root))
    if case.adapter in ("openai", "vllm", "azure"):
        config["backends"]["up"]["responses"] = "translate"
    gateway = make_gateway(orjson.dumps(config).decode())
    body = _responses_body(case.client_body)
    with httpx.stream("POST", f"{gateway.url}/v1/responses", json=body, timeout=10) as r:
        raw = b"".join(r.iter_bytes())
        status, content_type = r.status_code, r.headers.get("content-type", "")
    if case.adapter != "mock":  # the backend was asked in its own API, as for the chat request
        got = upstream.last
        assert got.path.endswith("/" + case.data["upstream_request"]["path"]), got.path
        h.headers_check(got.headers, case)

    response = case.data["response"]
    if "error" in response:  # OpenAI's error shape, as for chat
        h.assert_error(status, orjson.loads(raw), case)
        return
    assert status == response["status"]
    if status >= 400:  # an upstream error relayed in OpenAI's shape, as for chat
        assert orjson.loads(raw) == h.expected_json(case)
        return
    if "events" in response:
        assert content_type.startswith("text/event-stream")
        expected = h.chat_events_say(h.expected_events(case) if case.adapter != "mock" else response["events"])
        said = _response_events(raw)
        assert said.pop("complete") == (expected["error"] is None)
        keys = ("text", "reasoning", "tools", "finish", "usage") if expected["error"] is None else ("text", "error")
    else:
        assert content_type.startswith("application/json")
        expected = h.chat_json_says(h.expected_json(case) if case.adapter != "mock" else response["json"])
        said = _response_json(RESPONSE.validate_python(orjson.loads(raw)))
        keys = ("text", "reasoning", "tools", "finish", "usage")
    if case.adapter == "mock":  # ids and words made up per request form: compare names and lengths
        for answer in (said, expected):
            answer["tools"] = [t[1] for t in answer.get("tools", ())]
            answer["text"] = bool(answer["text"])
            answer["usage"] = answer.get("usage") and answer["usage"][2]
    if expected.get("usage") is None and said.get("usage") is not None:
        keys = tuple(k for k in keys if k != "usage")  # the backend reported none: the client sees zeros
    for key in keys:
        assert said[key] == expected[key], key


@pytest.mark.parametrize("backend_type", [t for t in h.backend_types()
                                          if "responses" in getattr(adapter_for(t), "native_paths", ())])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_native_backends_relay_responses_byte_for_byte(backend_type, stream, upstream, make_gateway):
    """Backend types that serve the Responses API get the client's body as it is (under the
    target's model) and their answer comes back unchanged, a stream however its reads are cut."""
    case = next(c for c in h.load_cases() if c.adapter == backend_type and c.name == "plain_chat")
    body = {"model": h.PUBLIC_MODEL, "input": "Hi", "stream": stream}
    if stream:
        whole = b"".join(response_events(["Hel", "lo"]))
        rng = random.Random(backend_type)
        cuts = sorted(rng.sample(range(1, len(whole)), 20))
        upstream.sse([whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)])
    else:
        whole = orjson.dumps(response_object("Hello"))
        upstream.json(whole)
    gateway = make_gateway(h.gateway_config(case, upstream.url[: -len("/v1")]))
    r = httpx.post(f"{gateway.url}/v1/responses", json=body, timeout=10)
    assert r.status_code == 200 and r.content == whole
    assert upstream.last.path.endswith("/responses") and upstream.last.json() == {**body, "model": case.target_model}
