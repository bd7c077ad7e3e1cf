"""What the mock backend says: one ``Answer`` per choice, decided from the request alone.

A choice is plain text (words from a fixed vocabulary picked by a hash of the request, so the
same request always reads the same), a tool call (``arguments`` a JSON instance of the tool's
``parameters`` schema) or structured output (JSON valid against ``response_format``'s schema).
Each answer is a list of "tokens" (the pieces a stream sends); ``gateway.providers.mock.backend`` turns
answers into bodies and streams and times them. Logprob entries have OpenAI's shapes.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import orjson

from gateway.providers.mock.checks import chosen_name, function_tools
from gateway.providers.mock.json_instance import instance

WORDS = tuple(
    "the gateway streams tokens quickly while logging every request to ClickHouse and routing "
    "traffic across backends with retries fallbacks caching and versioned prompts for teams".split())
_SPACED = tuple(" " + w for w in WORDS)  # every word after the first follows a space
_JSON_PIECE = 4  # characters of JSON per mock token, about what a real tokenizer yields


def seed_of(body: dict[str, Any]) -> int:
    material = orjson.dumps(body.get("messages") or body.get("prompt") or body.get("input") or "")
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big")


class Answer:
    """One choice: ``pieces`` (its tokens), ``finish_reason``, and for a tool call ``tool``
    (the function's name) and ``call_id``."""

    __slots__ = ("pieces", "finish_reason", "tool", "call_id", "seed")

    def __init__(self, pieces: list[str], finish_reason: str, seed: int, tool: str | None = None):
        self.pieces = pieces
        self.finish_reason = finish_reason
        self.seed = seed
        self.tool = tool
        self.call_id = f"call_{secrets.token_hex(12)}" if tool is not None else None


def words(seed: int, count: int) -> list[str]:
    if count <= 0:
        return []
    n = len(WORDS)
    return [WORDS[seed % n], *[_SPACED[(seed + i * 7) % n] for i in range(1, count)]]


def _json_answer(value: Any, seed: int, limit: int | None, tool: str | None = None) -> Answer:
    text = orjson.dumps(value).decode()
    pieces = [text[i:i + _JSON_PIECE] for i in range(0, len(text), _JSON_PIECE)]
    if limit is not None and len(pieces) > limit:
        return Answer(pieces[:limit], "length", seed, tool)
    return Answer(pieces, "tool_calls" if tool is not None else "stop", seed, tool)


def _calls_tool(body: dict[str, Any], tools: list[dict]) -> dict | None:
    """The function this request's answer calls, or ``None`` for a message."""
    if not tools:
        return None
    choice = body.get("tool_choice")
    name = chosen_name(choice)
    if name is not None:
        return next((t for t in tools if t["name"] == name), None)
    if choice == "none":
        return None
    if choice != "required":  # auto: answer in words once a tool result came back
        messages = body.get("messages") or ()
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") in ("tool", "function"):
            return None
    return tools[0]


def plan(body: dict[str, Any], tokens: int, chat: bool) -> list[Answer]:
    """One ``Answer`` per requested choice (``n``); ``tokens``: words in a text answer."""
    seed = seed_of(body)
    n = body.get("n")
    n = n if isinstance(n, int) and n > 1 else 1
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    limit = limit if isinstance(limit, int) and limit >= 0 else None
    count = min(tokens, limit) if limit is not None else tokens
    tools = function_tools(body) if chat and "tools" in body else ()
    fmt = body.get("response_format") if chat else None
    fmt = fmt if isinstance(fmt, dict) else {}
    fmt_type = fmt.get("type")
    function = _calls_tool(body, tools) if tools else None
    out = []
    for i in range(n):
        s = seed + i * 9973
        if function is not None:
            args = instance(function.get("parameters") or {"type": "object"}, WORDS, s)
            out.append(_json_answer(args, s, limit, function["name"]))
        elif fmt_type == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            out.append(_json_answer(instance(schema if isinstance(schema, dict) else {"type": "object"}, WORDS, s),
                                    s, limit))
        elif fmt_type == "json_object":
            out.append(_json_answer({"answer": "".join(words(s, count))}, s, limit))
        else:
            # A whole answer ends ``stop``; ``length`` only where the request's cap cut it (a
            # Responses client reads ``length`` as an incomplete turn).
            text = words(s, count)
            out.append(Answer(text, "length" if text and limit is not None and limit <= tokens else "stop", s))
    return out


def _logprob(seed: int, position: int) -> float:
    return -((seed >> (position % 40)) % 1000 + 1) / 2000


def _alternatives(piece: str, seed: int, position: int, top: int, logprob: float) -> list[tuple[str, float]]:
    out = [(piece, logprob)]
    n = len(WORDS)
    for k in range(1, top):
        word = " " + WORDS[(seed + position * 11 + k * 5) % n]
        if word != piece:
            out.append((word, round(logprob - 1.5 * k, 6)))
    return out[:top]


def chat_logprobs(answer: Answer, start: int, stop: int, top: int) -> dict[str, Any]:
    """``choices[].logprobs`` of a chat answer for its pieces ``start:stop``."""
    if answer.tool is not None:
        return {"content": None, "refusal": None}
    content = []
    for pos in range(start, min(stop, len(answer.pieces))):
        piece = answer.pieces[pos]
        lp = _logprob(answer.seed, pos)
        content.append({"token": piece, "logprob": lp, "bytes": list(piece.encode()),
                        "top_logprobs": [{"token": t, "logprob": p, "bytes": list(t.encode())}
                                         for t, p in _alternatives(piece, answer.seed, pos, top, lp)]})
    return {"content": content, "refusal": None}


def completion_logprobs(answer: Answer, start: int, stop: int, top: int, offset: int) -> dict[str, Any]:
    """``choices[].logprobs`` of a legacy completion for pieces ``start:stop`` (text at ``offset``)."""
    tokens, values, tops, offsets = [], [], [], []
    for pos in range(start, min(stop, len(answer.pieces))):
        piece = answer.pieces[pos]
        lp = _logprob(answer.seed, pos)
        tokens.append(piece)
        values.append(lp)
        tops.append(dict(_alternatives(piece, answer.seed, pos, top, lp)) if top else {})
        offsets.append(offset)
        offset += len(piece)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}
