"""Usage, timing and text of a Responses API answer relayed as the backend sent it.

Backends that speak the Responses API (OpenAI, Azure, vLLM) answer ``/v1/responses`` in their
own shapes: a ``response`` object (``usage.input_tokens`` …) or a stream of typed events that
ends with ``response.completed`` (or ``response.incomplete`` / ``response.failed``). Translated
answers reach the relay already in these shapes, so the same reading serves both. The relay
forwards the bytes unchanged; this module only reads them, so each row gets tokens, cost,
TTFT and inter-token times like a chat completion's.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.context import RequestContext, Usage
from gateway.core.errors import GatewayError
from gateway.core.sse import SSESplitter, event_data, event_json

# Events that carry generated output: the first one is the first token, each one a chunk (ITL).
# Tool inputs count: a coding agent's turn may produce nothing else (Codex's apply_patch is a
# custom tool, its shell a function or shell call).
_PRODUCING = frozenset({
    "response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta",
    "response.reasoning_text.delta", "response.reasoning_summary_text.delta",
    "response.custom_tool_call_input.delta", "response.shell_call_command.delta",
    "response.mcp_call_arguments.delta", "response.code_interpreter_call_code.delta",
})
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
# ``incomplete_details.reason`` in the chat vocabulary the rows use for finish_reason.
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}
# Output items that end the turn for the client to run a tool (hosted tools run in the backend).
_CALLS = frozenset({"function_call", "custom_tool_call", "shell_call", "local_shell_call", "apply_patch_call",
                    "computer_call"})


def finish_reason(response: dict[str, Any]) -> str:
    """A ``response`` object's ending in the rows' (chat) vocabulary: ``stop``, ``tool_calls``,
    ``length``, ``content_filter``; its ``status`` when it says nothing more, and nothing while
    it is still running."""
    status = response.get("status")
    if status == "completed":
        output = response.get("output") or ()
        calls = any(isinstance(item, dict) and item.get("type") in _CALLS for item in output)
        return "tool_calls" if calls else "stop"
    if status == "incomplete":
        details = response.get("incomplete_details") or {}
        reason = details.get("reason") if isinstance(details, dict) else None
        return _INCOMPLETE.get(reason or "", reason or "incomplete")
    return status if isinstance(status, str) and status not in ("in_progress", "queued") else ""


def observe_response(ctx: RequestContext, response: dict[str, Any], text: bool = True) -> None:
    """Record what a ``response`` object says: model, id, usage, finish reason and (``text``)
    the output text."""
    ctx.model_served = response.get("model") or ctx.model_served
    ctx.response_id = response.get("id") or ctx.response_id
    usage = response.get("usage")
    if isinstance(usage, dict):
        turn = ctx.conversation  # a translated answer: its backend's own counts (unknown stays unknown)
        ctx.usage = turn.usage if turn is not None and turn.usage is not None else Usage.from_responses(usage)
    reason = finish_reason(response)
    if reason:
        ctx.finish_reason = reason
    if not text:
        return
    for item in response.get("output") or ():
        if isinstance(item, dict) and item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    ctx.completion_text.append(part["text"])


def observe_json(ctx: RequestContext, body: bytes, parsed: Any = None) -> None:
    """A whole (non-streamed) Responses answer; ``parsed``: already decoded."""
    if parsed is None:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
    if isinstance(parsed, dict):
        observe_response(ctx, parsed)


class ResponsesTee:
    """Observe a native Responses event stream while relaying it byte for byte.

    The relay's tee interface (as ``gateway.proxy.streaming.StreamTee``): ``feed(data, now)``
    returns the bytes to send (whole events; an incomplete one is held), ``tail()`` what is
    left at the end, ``done`` once a terminal event passed, ``upstream_error`` when the backend
    reported a failure in-band, ``error_event(exc)`` the events that tell the client of a
    failure the gateway saw: ``error``, then ``response.failed`` once the stream had begun a
    response (numbered after the backend's last event).
    """

    __slots__ = ("_ctx", "_split", "done", "upstream_error", "_sequence", "_response")
    END = "response.completed"

    def __init__(self, ctx: RequestContext):
        self._ctx = ctx
        self._split = SSESplitter()
        self.done = False
        self.upstream_error: dict | None = None
        self._sequence = -1
        self._response: dict | None = None  # the response as response.created announced it

    def feed(self, data: bytes, now: float) -> bytes:
        events = self._split.feed(data)
        if not events:
            return b""
        out = [self._observe(raw, now) for raw in events]
        return out[0] if len(out) == 1 else b"".join(out)

    def tail(self) -> bytes:
        return self._split.tail()

    def error_event(self, exc: GatewayError) -> bytes:
        out = self._event({"type": "error", "code": exc.code, "message": exc.message, "param": None})
        if self._response is not None:
            failed = {**self._response, "status": "failed", "error": {"code": "server_error", "message": exc.message}}
            out += self._event({"type": "response.failed", "response": failed})
        return out

    def _event(self, payload: dict) -> bytes:
        self._sequence += 1
        payload["sequence_number"] = self._sequence
        return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _observe(self, raw: bytes, now: float) -> bytes:
        event = event_json(raw)
        if event is None:
            return raw  # not ours to judge; pass it on
        kind = event.get("type")
        ctx = self._ctx
        if kind in _PRODUCING:
            if ctx.t_first_token is None:
                ctx.t_first_token = now
            ctx.chunk_times.append(now)
            if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
                ctx.completion_text.append(event["delta"])
        sequence = event.get("sequence_number")
        if isinstance(sequence, int) and sequence > self._sequence:
            self._sequence = sequence
        response = event.get("response")
        if kind in ("response.created", "response.in_progress") and isinstance(response, dict):
            observe_response(ctx, response, text=False)
            self._response = response
        elif kind in _TERMINAL:
            self.done = True
            if kind == "error" or kind == "response.failed":
                raw, event = self._masked(raw, event)
                response = event.get("response")
            if isinstance(response, dict):
                observe_response(ctx, response, text=False)
            if kind == "error":
                self.upstream_error = {"message": str(event.get("message", "")), "code": event.get("code")}
            elif kind == "response.failed":
                error = response.get("error") if isinstance(response, dict) else None
                self.upstream_error = error if isinstance(error, dict) else {"message": "the response failed"}
        return raw

    def _masked(self, raw: bytes, event: dict) -> tuple[bytes, dict]:
        """An error event with any run of a configured secret masked (an upstream may echo its key)."""
        runtime = self._ctx.runtime
        secrets = runtime.secrets if runtime is not None else None
        if not secrets:
            return raw, event
        masked = secrets.mask_runs(raw)
        if masked is raw:
            return raw, event
        try:
            parsed = orjson.loads(event_data(masked) or b"")
        except orjson.JSONDecodeError:  # the mask cut through the JSON
            parsed = {"type": event.get("type"), "message": masked.decode("utf-8", "replace")}
        return masked, parsed if isinstance(parsed, dict) else event
