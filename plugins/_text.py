"""Where the text of a request lives, for plugins that read or rewrite it.

One walker visits every text-bearing field of the request shapes the gateway serves;
``map_texts(endpoint, body, fn)`` replaces each string in place with ``fn(text)`` and says
whether anything changed, ``iter_texts(endpoint, body)`` lists them. Covered:

- chat ``messages``: string content and ``text`` parts, ``name``, ``refusal``, tool calls
  (``name``, ``arguments``) and the legacy ``function_call``;
- Anthropic messages: ``system`` (string or text blocks), content blocks (``text``,
  ``tool_use`` input values, ``tool_result`` content);
- ``prompt`` and ``suffix`` (completions: a string or a list of strings);
- ``input`` (embeddings: strings; responses: strings and message / function-call items) and
  ``instructions`` (responses);
- tool definitions in ``tools`` and the legacy ``functions`` (OpenAI, Responses and Anthropic
  shapes): the tool's ``name`` and ``description``, and in its parameter schema every
  ``description``, ``title``, ``const`` and ``default`` string and the strings of ``enum`` and
  ``examples`` (a model reads them all); the same in a structured-output schema
  (``response_format``, the Responses API's ``text.format``);
- vLLM's ``chat_template`` (a template is prompt text) and every string of ``chat_template_kwargs``.

Binary payloads (image URLs, base64 data, audio) are never visited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Fn = Callable[[str], str]

_CONTENT_FIELDS = ("messages", "prompt", "suffix", "input", "instructions", "system", "chat_template")
_TOOL_FIELDS = ("tools", "functions")
# Keys of a message, content part or input item whose value is text (or holds text).
_TEXT_KEYS = ("content", "text", "input_text", "arguments", "output", "name", "refusal")
_SCHEMA_TEXT_KEYS = ("description", "title", "const", "default")
_SCHEMA_VALUE_KEYS = ("enum", "examples")  # lists of values, strings among them
_SCHEMA_FIELDS = ("response_format", "text")  # structured-output schemas (chat; Responses' text.format)
_VALUE_FIELDS = ("chat_template_kwargs",)  # vLLM: values a chat template may render


def _walk(node: Any, fn: Fn) -> tuple[Any, bool]:
    """Visit the strings of a content node; returns ``(new_node, changed)``."""
    if isinstance(node, str):
        new = fn(node)
        return new, new != node
    if isinstance(node, list):
        changed = False
        for i, item in enumerate(node):
            new, c = _walk(item, fn)
            if c:
                node[i] = new
                changed = True
        return node, changed
    if isinstance(node, dict):
        changed = _keys(node, _TEXT_KEYS, fn)
        value = node.get("input")
        if isinstance(value, str):  # a custom tool call's input
            changed |= _keys(node, ("input",), fn)
        elif isinstance(value, (dict, list)):  # Anthropic tool_use arguments
            changed |= _walk_values(value, fn)
        for key in ("tool_calls", "function_call"):
            calls = node.get(key)
            for call in calls if isinstance(calls, list) else (calls,):
                if isinstance(call, dict):
                    target = call.get("function") if isinstance(call.get("function"), dict) else call
                    changed |= _keys(target, ("name", "arguments"), fn)
        return node, changed
    return node, False


def _keys(node: dict, keys: tuple[str, ...], fn: Fn) -> bool:
    changed = False
    for key in keys:
        if key in node:
            new, c = _walk(node[key], fn)
            if c:
                node[key] = new
                changed = True
    return changed


def _walk_values(node: Any, fn: Fn) -> bool:
    """Every string anywhere below ``node`` (structured tool arguments)."""
    changed = False
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        if isinstance(value, str):
            new = fn(value)
            if new != value:
                node[key] = new
                changed = True
        elif isinstance(value, (dict, list)):
            changed |= _walk_values(value, fn)
    return changed


def _schema(node: Any, fn: Fn) -> bool:
    """The text of a JSON schema, at any depth: ``description``, ``title``, ``const`` and
    ``default`` strings, and the strings of ``enum`` and ``examples``."""
    changed = False
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                if key in _SCHEMA_TEXT_KEYS:
                    new = fn(value)
                    if new != value:
                        node[key] = new
                        changed = True
            elif key in _SCHEMA_VALUE_KEYS and isinstance(value, list):
                changed |= _walk_values(value, fn)
            elif isinstance(value, (dict, list)):
                changed |= _schema(value, fn)
    elif isinstance(node, list):
        for item in node:
            changed |= _schema(item, fn)
    return changed


def _tools(tools: Any, fn: Fn) -> bool:
    changed = False
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        spec = tool["function"] if isinstance(tool.get("function"), dict) else tool
        for key in ("name", "description"):
            value = spec.get(key)
            if isinstance(value, str):
                new = fn(value)
                if new != value:
                    spec[key] = new
                    changed = True
        for key in ("parameters", "input_schema"):
            if key in spec:
                changed |= _schema(spec[key], fn)
    return changed


def map_texts(endpoint: str, body: dict, fn: Fn) -> bool:
    """Replace every text string of ``body`` with ``fn(text)`` in place; True if any changed."""
    changed = False
    for field in _CONTENT_FIELDS:
        if field in body:
            new, c = _walk(body[field], fn)
            if c:
                body[field] = new
                changed = True
    for field in _TOOL_FIELDS:
        if field in body:
            changed |= _tools(body[field], fn)
    for field in _SCHEMA_FIELDS:
        if isinstance(body.get(field), dict):
            changed |= _schema(body[field], fn)
    for field in _VALUE_FIELDS:
        if isinstance(body.get(field), (dict, list)):
            changed |= _walk_values(body[field], fn)
    return changed


def iter_texts(endpoint: str, body: dict) -> Iterator[str]:
    """Every text string of a request body (the strings ``map_texts`` visits)."""
    out: list[str] = []

    def keep(text: str) -> str:
        out.append(text)
        return text

    map_texts(endpoint, body, keep)
    return iter(out)
