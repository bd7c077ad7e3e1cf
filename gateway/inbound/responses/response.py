"""A Chat Completions answer as a Responses API ``response`` object.

The object echoes the request's settings (``instructions``, ``tools``, ``tool_choice``,
``temperature``, ``metadata`` …) as OpenAI does, and lists the output items the chat message
carried, in the order a Responses model emits them: ``reasoning`` (when the backend exposes it
as ``reasoning_content`` or ``reasoning``), the assistant ``message`` (``output_text`` or a
``refusal``), then one ``function_call`` per tool call (``custom_tool_call`` for the request's
custom tools, ``custom.py``). ``finish_reason: length`` (or
``content_filter``) makes the response ``incomplete`` with that reason. The stream encoder
(``stream.py``) builds its final object with the same functions.
"""

from __future__ import annotations

from typing import Any

from gateway.core.context import Usage
from gateway.inbound.chunks import function_of, reasoning_of, text_of, tool_calls
from gateway.inbound.responses import custom

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def item_id(response_id: str, kind: str, n: int = 0) -> str:
    """A stable id for the ``n``-th output item of a kind (``msg``, ``fc``, ``rs``) of a response."""
    suffix = response_id.removeprefix("resp_")
    return f"{kind}_{suffix}" if n == 0 else f"{kind}_{suffix}_{n}"


def _setting(request: dict[str, Any], name: str, default: Any) -> Any:
    """A setting as the response echoes it: the request's, or the default in force when it was
    left out or sent as ``null``."""
    value = request.get(name)
    return default if value is None else value


def shell(request: dict[str, Any], response_id: str, created_at: int, model: str, status: str) -> dict[str, Any]:
    """The ``response`` object without output and usage: what ``response.created`` carries."""
    text = request.get("text") if isinstance(request.get("text"), dict) else None
    reasoning: dict[str, Any] = request["reasoning"] if isinstance(request.get("reasoning"), dict) else {}
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "background": False, "error": None, "incomplete_details": None,
        "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
        "model": model, "output": [], "parallel_tool_calls": _setting(request, "parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": _setting(request, "store", True), "temperature": _setting(request, "temperature", 1.0),
        "text": {"format": (text or {}).get("format") or {"type": "text"}},
        "tool_choice": _setting(request, "tool_choice", "auto"), "tools": request.get("tools") or [],
        "top_p": _setting(request, "top_p", 1.0), "truncation": _setting(request, "truncation", "disabled"),
        "usage": None, "user": request.get("user"), "metadata": request.get("metadata") or {},
        "prompt_cache_key": request.get("prompt_cache_key"), "safety_identifier": request.get("safety_identifier"),
    }


def usage(chat_usage: Any) -> dict[str, Any] | None:
    """Chat ``usage`` in the Responses shape (None when the backend reported none). What is not a
    count reads as unknown, as on every relay: 0 in the shape's required fields, or None when
    neither the prompt's nor the completion's count can be read."""
    counts = Usage.from_openai(chat_usage)
    if counts.prompt_tokens is None and counts.completion_tokens is None:
        return None
    prompt, completion = counts.prompt_tokens or 0, counts.completion_tokens or 0
    inputs = {"cached_tokens": counts.cached_tokens or 0, "cache_write_tokens": counts.cache_write_tokens or 0}
    return {"input_tokens": prompt, "input_tokens_details": inputs, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": counts.reasoning_tokens or 0},
            "total_tokens": counts.total_tokens or prompt + completion}


def wants_summary(request: dict[str, Any]) -> bool:
    """The request asks for a reasoning summary (``reasoning.summary``, or the older
    ``generate_summary``): the backend's reasoning is then told as the summary, as clients that
    ask (Codex) show only summaries."""
    reasoning = request.get("reasoning")
    if not isinstance(reasoning, dict):
        return False
    return (reasoning.get("summary") or reasoning.get("generate_summary")) in ("auto", "concise", "detailed")


def reasoning_item(response_id: str, text: str, status: str = "completed", summary: bool = False) -> dict[str, Any]:
    """A reasoning item with ``text`` as its content, or (``summary``) as its summary."""
    if summary:
        return {"id": item_id(response_id, "rs"), "type": "reasoning",
                "summary": [{"type": "summary_text", "text": text}], "status": status}
    return {"id": item_id(response_id, "rs"), "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}], "status": status}


def message_item(response_id: str, parts: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {"id": item_id(response_id, "msg"), "type": "message", "role": "assistant", "status": status,
            "content": parts}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(response_id: str, n: int, call_id: str, name: str, arguments: str,
              status: str = "completed") -> dict[str, Any]:
    return {"id": item_id(response_id, "fc", n), "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def finish(response: dict[str, Any], finish_reason: Any) -> dict[str, Any]:
    """Set ``status`` (and ``incomplete_details``) from the chat finish reason."""
    reason = _INCOMPLETE.get(text_of(finish_reason))
    response["status"] = "completed" if reason is None else "incomplete"
    response["incomplete_details"] = None if reason is None else {"reason": reason}
    return response


def from_chat(chat: dict[str, Any], request: dict[str, Any], response_id: str, created_at: int = 0) -> dict[str, Any]:
    """The ``response`` object for a chat completion ``chat`` answering ``request`` (``created_at``:
    the time when the backend tells none); fields of the wrong type read as absent."""
    model = text_of(chat.get("model")) or request.get("model", "")
    created = chat.get("created")
    out = shell(request, response_id, created if type(created) is int and created else created_at, model, "completed")
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    items: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning:
        items.append(reasoning_item(response_id, reasoning, summary=wants_summary(request)))
    refusal, text = text_of(message.get("refusal")), text_of(message.get("content"))
    if refusal:
        items.append(message_item(response_id, [{"type": "refusal", "refusal": refusal}]))
    elif text:
        items.append(message_item(response_id, [text_part(text)]))
    customs = custom.names(request.get("tools"))
    for n, call in enumerate(tool_calls(message)):
        function = function_of(call)
        name, arguments = text_of(function.get("name")), text_of(function.get("arguments"))
        call_id = text_of(call.get("id")) or item_id(response_id, "call", n)  # some servers give none
        items.append(custom.call_item(item_id(response_id, "ctc", n), call_id, name, arguments)
                     if name in customs else call_item(response_id, n, call_id, name, arguments))
    out["output"] = items
    out["usage"] = usage(chat.get("usage"))
    return finish(out, choice.get("finish_reason"))
