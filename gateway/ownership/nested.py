"""The stored objects a request body names below its top level, in the shapes the APIs define:

- Responses ``input`` and chat ``messages`` (and Anthropic's ``messages``): each item's
  content parts with a ``file_id`` of their own (``input_file``, ``input_image``), in a
  ``file`` (chat's ``{"type": "file", "file": {"file_id": ...}}``) or in a ``source``
  (Anthropic's documents and images, ``{"type": "file", "file_id": ...}``), one level into a
  part's own ``content`` (a ``tool_result``), and a message's ``attachments``;
- ``tools[].vector_store_ids`` (``file_search``);
- ``tool_resources`` (``code_interpreter.file_ids``, ``file_search.vector_store_ids``), also
  in a run's ``thread``, and a message's ``attachments[].file_id``.

Known shapes only, not every string of the body, and only for a body whose bytes could hold
such a field: any other request costs a few byte searches.
"""

from __future__ import annotations

from typing import Any

# A body naming a nested object holds one of these bytes: ``_id`` is in ``file_id`` and
# ``vector_store_ids`` (one search for both); ``\u`` because a JSON key may be written escaped
# (``"file\u005fid"``), which only the parsed body shows.
_ID, _ESCAPE = b"_id", b"\\u"


def nested_ids(body: Any) -> list[tuple[str, str]]:
    """``(top-level field, id)`` for each object ``body`` (a ``RequestBody``) names in the
    shapes above."""
    if not isinstance(body, dict):
        return []
    raw = getattr(body, "raw", None)  # None: a stage changed the body, so walk it
    if raw is not None and _ID not in raw and _ESCAPE not in raw:
        return []
    out: list[tuple[str, str]] = []
    for field in ("input", "messages"):
        _messages(body.get(field), field, out)
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict):
                _strings(tool.get("vector_store_ids"), "tools", out)
    _tool_resources(body.get("tool_resources"), "tool_resources", out)
    _attachments(body.get("attachments"), "attachments", out)
    thread = body.get("thread")  # a thread made with its run
    if isinstance(thread, dict):
        _messages(thread.get("messages"), "thread", out)
        _tool_resources(thread.get("tool_resources"), "thread", out)
    return out


def _messages(items: Any, field: str, out: list[tuple[str, str]]) -> None:
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        _part(item, field, out)
        content = item.get("content")
        if isinstance(content, list):
            for part in content:
                _part(part, field, out)
                inner = part.get("content") if isinstance(part, dict) else None
                if isinstance(inner, list):  # a tool result's own blocks
                    for block in inner:
                        _part(block, field, out)
        _attachments(item.get("attachments"), field, out)


def _part(part: Any, field: str, out: list[tuple[str, str]]) -> None:
    if not isinstance(part, dict):
        return
    for holder in (part, part.get("file"), part.get("source")):
        if isinstance(holder, dict) and isinstance(value := holder.get("file_id"), str) and value:
            out.append((field, value))


def _attachments(items: Any, field: str, out: list[tuple[str, str]]) -> None:
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(value := item.get("file_id"), str) and value:
                out.append((field, value))


def _tool_resources(resources: Any, field: str, out: list[tuple[str, str]]) -> None:
    if not isinstance(resources, dict):
        return
    for name, key in (("code_interpreter", "file_ids"), ("file_search", "vector_store_ids")):
        resource = resources.get(name)
        if isinstance(resource, dict):
            _strings(resource.get(key), field, out)


def _strings(values: Any, field: str, out: list[tuple[str, str]]) -> None:
    if isinstance(values, list):
        out.extend((field, v) for v in values if isinstance(v, str) and v)


__all__ = ["nested_ids"]
