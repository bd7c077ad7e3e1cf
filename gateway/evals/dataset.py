"""The items of an evaluation: what each candidate is asked, and what a scorer compares with.

One item comes from one JSON object — a line of a JSONL file or a row selected by SQL:

- ``{"messages": [...]}`` (OpenAI's fine-tuning/chat format, ``dataset export``'s output): the
  messages before a final assistant message are the input; that assistant message's text is the
  expected answer (none when the last message is not the assistant's).
- ``{"input": "text", "expected": "text"}``: one user message.
- a row of ``llm_requests`` with ``request_body`` and ``response_body``: the logged request's
  messages, and the logged answer as the expected one.

Optional fields: ``id`` (else ``request_id``; the item's id in the scores), ``expected``
(overrides the assistant message), ``variables`` (for prompt-version candidates), ``tools``,
and anything else, which scorers may read (``regex``, ``contains``, ``schema``, ``tolerance``;
plugins get the whole object).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.datasets.export import assistant_message


class DatasetError(ValueError):
    """An item cannot be read; the message names its line or row."""


@dataclass(frozen=True)
class Item:
    """One dataset entry: ``messages`` to send, ``expected`` text (or ``None``), ``data`` the
    whole source object."""

    index: int
    item_id: str
    messages: list[dict]
    expected: str | None
    variables: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def input_text(self) -> str:
        """The last user message's text (what a judge reads as the question)."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return message_text(m)
        return message_text(self.messages[-1]) if self.messages else ""


def message_text(message: dict) -> str:
    """A message's text: its string content, or its text parts joined; tool calls as JSON."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if message.get("tool_calls"):
        return orjson.dumps(message["tool_calls"]).decode()
    return ""


def _from_request_row(obj: dict) -> tuple[list[dict], str | None]:
    try:
        body = orjson.loads(obj["request_body"])
    except orjson.JSONDecodeError:
        raise DatasetError("request_body is not JSON (cut at telemetry.bodies.max_bytes?)") from None
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise DatasetError("request_body has no messages")
    answer = assistant_message(obj.get("response_body") or "", bool(obj.get("stream")))
    return body["messages"], (message_text(answer) if answer else None)


def to_item(index: int, obj: Any) -> Item:
    """The item of one JSON object (see the module docstring); raises ``DatasetError``."""
    if not isinstance(obj, dict):
        raise DatasetError("an item must be a JSON object")
    expected: str | None = None
    messages = obj.get("messages")
    if isinstance(messages, str):  # a SQL row's JSON column
        try:
            messages = orjson.loads(messages)
        except orjson.JSONDecodeError:
            raise DatasetError("messages is not JSON") from None
    if messages is not None:
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise DatasetError("messages must be a list of objects")
        if messages and messages[-1].get("role") == "assistant":
            expected = message_text(messages[-1])
            messages = messages[:-1]
    elif isinstance(obj.get("input"), str):
        messages = [{"role": "user", "content": obj["input"]}]
    elif obj.get("request_body"):
        messages, expected = _from_request_row(obj)
    else:
        raise DatasetError("an item needs messages, input, or request_body")
    if obj.get("expected") is not None:
        expected = obj["expected"] if isinstance(obj["expected"], str) else orjson.dumps(obj["expected"]).decode()
    variables = obj.get("variables") or {}
    if not isinstance(variables, dict):
        raise DatasetError("variables must be an object")
    item_id = obj.get("id", obj.get("request_id", ""))
    return Item(index, str(item_id) if item_id is not None else "", messages, expected, variables, obj)


@dataclass(frozen=True)
class Dataset:
    """The items, where they came from (``name``) and the SHA-256 of their source objects."""

    name: str
    items: list[Item]
    content_hash: str


def _hash(objects: list[Any]) -> str:
    h = hashlib.sha256()
    for obj in objects:
        h.update(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS))
        h.update(b"\n")
    return h.hexdigest()


def from_objects(name: str, objects: list[Any], where: str = "row") -> Dataset:
    """A dataset of JSON objects (``where`` names them in errors: ``line``, ``row``)."""
    items = []
    for i, obj in enumerate(objects):
        try:
            items.append(to_item(i, obj))
        except DatasetError as exc:
            raise DatasetError(f"{name}: {where} {i + 1}: {exc}") from None
    if not items:
        raise DatasetError(f"{name}: no items")
    return Dataset(name, items, _hash(objects))


def read_jsonl(path: str | Path, limit: int | None = None) -> Dataset:
    """The items of a JSONL file (blank lines skipped; ``limit``: the first N)."""
    p = Path(path)
    objects = []
    with p.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                objects.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise DatasetError(f"{p.name}: line {n}: not JSON ({exc})") from None
            if limit is not None and len(objects) >= limit:
                break
    return from_objects(p.name, objects, "item")


__all__ = ["Dataset", "DatasetError", "Item", "from_objects", "message_text", "read_jsonl", "to_item"]
