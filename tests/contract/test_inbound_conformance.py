"""The conformance fixtures through the inbound protocols: every chat case of every backend type
asked again in Anthropic's Messages API (``/v1/messages``), through a real gateway, with the
upstream's stream re-cut at random byte boundaries.

The Messages request is the case's chat request as Anthropic would take it (the outbound
adapter's ``translate_request``); the backend answers what the fixture scripts (Anthropic's
own SSE for ``anthropic`` backends, which get the request natively; chat completions for the
others, which get it translated). What the client receives must say what the chat answer says:
the same text, reasoning, tool calls, finish, usage and errors (status and message).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from gateway.core.errors import InvalidRequestError
from gateway.core.sse import SSESplitter, event_data, event_name
from gateway.inbound.anthropic.response import error_type
from gateway.providers.anthropic.request import translate_request
from gateway.providers.anthropic.response import FINISH_REASONS
from tests.contract import harness as h


def _messages_body(case: h.Case) -> dict[str, Any] | None:
    """The case's chat request in Anthropic's Messages API (None: it has no Messages form)."""
    try:
        body = translate_request(case.client_body, h.PUBLIC_MODEL, 256)
    except InvalidRequestError:
        return None
    return body


def _eligible(case: h.Case) -> bool:
    return (not case.get("skip") and case.endpoint == "chat/completions" and not case.refused
            and (case.adapter == "mock" or "upstream_response" in case.data) and _messages_body(case) is not None)


CASES = [pytest.param(c, id=c.id) for c in h.load_cases() if _eligible(c)]


# --- what an answer says, in either protocol ----------------------------------------------------


def _message_usage(usage: dict[str, Any]) -> tuple:
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    return usage["input_tokens"] + read + written, read, usage["output_tokens"]


def _message_json(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "message" and message["role"] == "assistant", message
    blocks = message["content"]
    return {"text": "".join(b["text"] for b in blocks if b["type"] == "text"),
            "reasoning": "".join(b["thinking"] for b in blocks if b["type"] == "thinking"),
            "tools": [(b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"],
            "finish": FINISH_REASONS[message["stop_reason"]], "usage": _message_usage(message["usage"])}


def _message_events(raw: bytes) -> dict[str, Any]:
    """Anthropic SSE → what it says; checks the event grammar on the way."""
    splitter = SSESplitter()
    events = [(event_name(e), orjson.loads(event_data(e) or b"null")) for e in splitter.feed(raw)]
    assert not splitter.tail(), "unterminated bytes at the end"
    names = [n.decode() if n else None for n, _ in events]
    assert all(n == p["type"] for n, p in zip(names, [p for _, p in events], strict=True)), names
    blocks: dict[int, dict[str, Any]] = {}
    usage: dict[str, Any] = {}
    out: dict[str, Any] = {"finish": None, "error": None, "complete": names[-1:] == ["message_stop"]}
    assert names[0] == "message_start", names
    open_block = None
    for _, p in events:
        kind = p["type"]
        if kind == "message_start":
            usage.update(p["message"]["usage"])
        elif kind == "content_block_start":
            assert open_block is None, "a block starts before the last one stopped"
            open_block = p["index"]
            blocks[p["index"]] = {**p["content_block"], "json": ""}
        elif kind == "content_block_delta":
            assert p["index"] == open_block
            block, delta = blocks[p["index"]], p["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                block["json"] += delta["partial_json"]
        elif kind == "content_block_stop":
            assert p["index"] == open_block
            open_block = None
        elif kind == "message_delta":
            usage.update({k: v for k, v in p["usage"].items() if v is not None})
            out["finish"] = FINISH_REASONS[p["delta"]["stop_reason"]]
        elif kind == "error":
            out["error"] = p["error"]["message"]
    ordered = [blocks[i] for i in sorted(blocks)]
    out.update(text="".join(b["text"] for b in ordered if b["type"] == "text"),
               reasoning="".join(b["thinking"] for b in ordered if b["type"] == "thinking"),
               tools=[(b["id"], b["name"], orjson.loads(b["json"]) if b["json"] else b["input"])
                      for b in ordered if b["type"] == "tool_use"],
               usage=_message_usage(usage) if out["finish"] else None)
    return out


# --- the suite ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_messages_inbound(case, upstream, make_gateway):
    root = upstream.url[: -len("/v1")]
    spec = h.script_upstream(upstream, case)
    gateway = make_gateway(h.gateway_config(case, root))
    body = _messages_body(case)
    assert body is not None
    with httpx.stream("POST", f"{gateway.url}/v1/messages", json=body, timeout=10,
                      headers={"anthropic-version": "2023-06-01"}) as r:
        raw = b"".join(r.iter_bytes())
        status, content_type = r.status_code, r.headers.get("content-type", "")

    native = case.adapter == "anthropic"
    if native:  # the client's Messages request as it is, under the target's model, with the backend's key
        got = upstream.last
        assert got.path.endswith("/messages") and got.json() == {**body, "model": case.target_model}
        h.headers_check(got.headers, case)
    elif case.adapter != "mock":
        assert upstream.last.path.endswith("/chat/completions")

    response = case.data["response"]
    if "error" in response or response["status"] >= 400:  # the same error, in Anthropic's shape
        error = orjson.loads(raw)
        assert error["type"] == "error" and set(error["error"]) == {"type", "message"}, error
        if native:  # relayed as Anthropic sent it (529 stays 529)
            assert status == spec["status"] and error == spec["json"]
        else:
            assert status == response["status"] and error["error"]["type"] == error_type(status)
            message = response["error"].get("message_contains") if "error" in response \
                else h.expected_json(case)["error"]["message"]
            assert message is None or message in error["error"]["message"]
        return
    assert status == response["status"]
    if "events" in response:
        assert content_type.startswith("text/event-stream")
        expected = h.chat_events_say(h.expected_events(case) if case.adapter != "mock" else response["events"])
        said = _message_events(raw)
        assert said["complete"] == (expected["error"] is None)
        if case.adapter == "mock":
            _as_mock(said, expected)
        for key in ("text", "reasoning", "tools", "error"):
            assert said[key] == expected[key], key
        if expected["error"] is None:
            assert said["finish"] == expected["finish"]
            assert expected["usage"] is None or said["usage"] == expected["usage"]
    else:
        assert content_type.startswith("application/json")
        expected = h.chat_json_says(h.expected_json(case) if case.adapter != "mock" else response["json"])
        said = _message_json(orjson.loads(raw))
        if case.adapter == "mock":
            _as_mock(said, expected)
        assert said == expected


def _as_mock(said: dict[str, Any], expected: dict[str, Any]) -> None:
    """The mock makes ids up per answer, and its words depend on the request's exact form (the
    Messages form differs from the chat one): compare tool names, and whether text came."""
    for answer in (said, expected):
        answer["tools"] = [t[1] for t in answer["tools"]]
        answer["text"] = bool(answer["text"])
        answer["usage"] = answer["usage"] and answer["usage"][2]  # completion tokens: the same answer length
