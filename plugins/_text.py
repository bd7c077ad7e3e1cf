"""Where the text of a request lives, for plugins that read or rewrite it.

``iter_texts(endpoint, body)`` yields every prompt string; ``map_texts(endpoint, body, fn)``
replaces each in place with ``fn(text)`` and says whether anything changed. Covered: chat
``messages`` (string content, ``text`` parts, tool-call arguments), ``prompt`` (completions),
``input`` (embeddings, responses: strings, lists of strings, message items).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

_FIELDS = ("messages", "prompt", "input", "instructions", "system")


def _walk(node: Any, fn: Callable[[str], str] | None, out: list[str] | None) -> tuple[Any, bool]:
    """Visit the strings of a content node; returns ``(new_node, changed)``."""
    if isinstance(node, str):
        if out is not None:
            out.append(node)
        if fn is None:
            return node, False
        new = fn(node)
        return new, new != node
    if isinstance(node, list):
        changed = False
        for i, item in enumerate(node):
            new, c = _walk(item, fn, out)
            if c:
                node[i] = new
                changed = True
        return node, changed
    if isinstance(node, dict):
        changed = False
        for key in ("content", "text", "input_text", "arguments", "output"):
            if key in node:
                new, c = _walk(node[key], fn, out)
                if c:
                    node[key] = new
                    changed = True
        for key in ("tool_calls",):
            if isinstance(node.get(key), list):
                for call in node[key]:
                    if isinstance(call, dict) and isinstance(call.get("function"), dict):
                        new, c = _walk(call["function"], fn, out)
                        changed |= c
        return node, changed
    return node, False


def iter_texts(endpoint: str, body: dict) -> Iterator[str]:
    """Every prompt string of a request body."""
    out: list[str] = []
    for field in _FIELDS:
        if field in body:
            _walk(body[field], None, out)
    return iter(out)


def map_texts(endpoint: str, body: dict, fn: Callable[[str], str]) -> bool:
    """Replace every prompt string of ``body`` with ``fn(text)`` in place; True if any changed."""
    changed = False
    for field in _FIELDS:
        if field in body:
            new, c = _walk(body[field], fn, None)
            if c:
                body[field] = new
                changed = True
    return changed
