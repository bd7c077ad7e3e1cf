"""Reading a translated target's chat completions for every inbound protocol's encoder.

Each protocol re-tells a chat answer in its own shapes (``anthropic.stream``,
``responses.stream``, and their JSON counterparts), but reads it the same way: what one SSE event
of a chunk stream holds (a chunk, or a failure the backend reported in-band), the reasoning a
backend exposes beside its answer, and which tool call a streamed delta continues — servers
differ there (vLLM's numeric error codes, Gemini's tool calls without an ``index``), so those
differences are met once, here. A field of the wrong type reads as absent, as the relay reads a
malformed ``usage`` (``Usage.from_any``): the readable rest of the answer is still told.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.sse import data_json

DONE = b"[DONE]"  # the data of a chat stream's last event


@dataclass(frozen=True, slots=True)
class InBandError:
    """A failure the backend reported inside its stream (``{"error": …}``): its message, and its
    code as a string whatever the backend sent (vLLM's are numbers) or None."""

    message: str
    code: str | None


def read_chunk(data: bytes) -> dict[str, Any] | InBandError | None:
    """One SSE event's data (not ``DONE``): the chunk, the error it reports, or None for anything
    else (not JSON, not an object), which a chat client skips too."""
    chunk = data_json(data)
    if chunk is None or "error" not in chunk:
        return chunk
    error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": chunk["error"]}
    code = error.get("code") or error.get("type")
    return InBandError(str(error.get("message") or "the backend's stream failed"), None if code is None else str(code))


def reasoning_of(message: dict[str, Any]) -> str | None:
    """The reasoning a backend exposes beside the answer, in a message or a delta (vLLM's
    reasoning parsers, DeepSeek: ``reasoning_content``; newer vLLM builds: ``reasoning``)."""
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) and value else None


def text_of(value: Any) -> str:
    """A field the answer should carry as a string (an id, a name, text): itself, or ``""`` when
    the backend sent another type (read as absent, never an error in the middle of a relay)."""
    return value if isinstance(value, str) else ""


def tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's (or a delta's) tool calls that can be read: the objects of a ``tool_calls`` list."""
    calls = message.get("tool_calls")
    return [call for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []


def function_of(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call's ``function`` (``{}`` when it is none or not an object)."""
    function = call.get("function")
    return function if isinstance(function, dict) else {}


def call_key(call: dict[str, Any], previous: Any) -> Any:
    """Which tool call a streamed ``tool_calls`` delta belongs to: its ``index``. Servers that send
    none (Gemini) send each call whole, or its id on the first delta only: then the id is the key,
    and a delta without one continues ``previous`` (the key of the call before it). An index or id
    of another type counts as none (it must not break the stream)."""
    index = call.get("index")
    if isinstance(index, int):
        return index
    call_id = call.get("id")
    return call_id if call_id and isinstance(call_id, str) else (0 if previous is None else previous)


__all__ = ["DONE", "InBandError", "call_key", "function_of", "read_chunk", "reasoning_of", "text_of", "tool_calls"]
