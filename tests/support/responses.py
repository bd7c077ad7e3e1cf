"""Native Responses API answers as OpenAI sends them, for a fake upstream that speaks ``/v1/responses``."""

from __future__ import annotations

import orjson

USAGE = {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0}, "output_tokens": 12,
         "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 32}


def response_object(text: str, usage: dict | None = USAGE, status: str = "completed",
                    model: str = "gpt-4o-2024-08-06") -> dict:
    """A ``response`` object with one assistant message (empty ``output`` unless ``completed``)."""
    message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}
    return {"id": "resp_abc", "object": "response", "created_at": 1700000000, "status": status, "model": model,
            "output": [message] if status == "completed" else [], "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "usage": usage if status == "completed" else None,
            "error": None, "incomplete_details": None, "instructions": None, "metadata": {}}


def response_events(parts: list[str], usage: dict | None = USAGE) -> list[bytes]:
    """The event stream of ``response_object("".join(parts))``, one SSE event per list item."""
    text = "".join(parts)
    item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    payloads: list[dict] = [
        {"type": "response.created", "response": response_object("", status="in_progress")},
        {"type": "response.in_progress", "response": response_object("", status="in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", **at, "part": part},
        *({"type": "response.output_text.delta", **at, "delta": p, "logprobs": []} for p in parts),
        {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": {**part, "text": text}},
        {"type": "response.output_item.done", "output_index": 0,
         "item": response_object(text)["output"][0]},
        {"type": "response.completed", "response": response_object(text, usage)},
    ]
    return [b"event: " + p["type"].encode() + b"\ndata: " + orjson.dumps({**p, "sequence_number": n}) + b"\n\n"
            for n, p in enumerate(payloads)]
