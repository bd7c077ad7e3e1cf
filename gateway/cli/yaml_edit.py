"""Change a few values of a YAML file in place, leaving every other byte as it was: comments,
key order, quoting, flow style and line breaks.

The file is parsed with ruamel.yaml's round-trip loader for the position of each key and value;
the edit is made on the text. A value that is replaced must be a scalar or a flow collection
on one line (``2``, ``[1, 2]``, ``{2: 90, 3: 10}``); a key that is added goes before the first
key of a block mapping (at its indentation), before the closing brace of a flow mapping, or at
the end of the file for the top level. The result is parsed again and checked to hold the new
values, so an edit that would land anywhere else is refused (``EditError``), never written.
A key is dropped (``DROP``) with its line in a block mapping, with its comma in a flow one.

Anchors, aliases and merge keys are refused: the text of the value is shared with (or comes
from) another place, which an edit of the text would change too, or cannot reach.
"""

from __future__ import annotations

import io
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

_SCALAR = re.compile(r"""-?\d+|"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,\]}#'"][^,\]}#\n]*?(?=\s*(?:[,\]}#]|$))""")


class EditError(ValueError):
    """The file cannot be edited this way (say why; nothing was written)."""


DROP = object()  # as a value: remove the key


def _yaml() -> YAML:
    return YAML(typ="rt")


def load(text: str) -> Any:
    return _yaml().load(io.StringIO(text))


def flow(value: Any) -> str:
    """``value`` (int, str, list, dict of those) as one line of YAML flow text."""
    if isinstance(value, bool) or value is None:
        raise EditError(f"cannot write {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value if re.fullmatch(r"[A-Za-z0-9_./@-]+", value) and not value[0].isdigit() else \
            '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in value.items()) + "}"
    raise EditError(f"cannot write {value!r}")


def _offset(lines: list[str], line: int, col: int) -> int:
    return sum(len(x) for x in lines[:line]) + col


def _flow_end(text: str, start: int) -> int:
    """The offset just past the flow collection that opens at ``start`` (same line only)."""
    depth, i, quote = 0, start, ""
    while i < len(text) and text[i] != "\n":
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise EditError("a value that spans lines (edit it by hand, or write it on one line)")


def _anchor(node: Any) -> str | None:
    anchor = getattr(node, "anchor", None)
    return getattr(anchor, "value", None)


def _value_span(text: str, lines: list[str], parent: CommentedMap, key: Any) -> tuple[int, int]:
    line, col = parent.lc.value(key)
    start = _offset(lines, line, col)
    if text[start:start + 1] in ("&", "*") or _anchor(parent[key]):
        raise EditError(f"the value of {key!r} on line {line + 1} is an anchor or alias (edit it by hand)")
    if text[start:start + 1] in ("[", "{"):
        return start, _flow_end(text, start)
    m = _SCALAR.match(text, start)
    if m is None or not m.group(0) or isinstance(parent[key], (dict, list)):
        raise EditError(f"cannot find the value of {key!r} on line {line + 1} (edit it by hand)")
    return start, m.end()


def _parent(doc: Any, path: list[Any]) -> CommentedMap:
    parent = doc
    where: list[Any] = []
    for part in path:
        if part not in parent.lc.data and part in parent:
            raise EditError(f"{'.'.join(map(str, [*where, part]))} comes from a merge key (<<) (edit it by hand)")
        parent = parent[part]
        where.append(part)
        if _anchor(parent):
            raise EditError(f"{'.'.join(map(str, where))} is an anchor (&{_anchor(parent)}) that other places "
                            "may use (edit it by hand)")
    if not isinstance(parent, CommentedMap):
        raise EditError(f"{'.'.join(map(str, path))}: not a mapping")
    return parent


def set_key(text: str, path: list[Any], key: Any, value: Any) -> str:
    """``text`` with ``<path>.<key>`` set to ``value`` (added when absent; removed for ``DROP``)."""
    parent = _parent(load(text), path)
    lines = text.splitlines(keepends=True)
    if key in parent and key not in parent.lc.data:
        raise EditError(f"{'.'.join(map(str, [*path, key]))} comes from a merge key (<<) (edit it by hand)")
    if value is DROP:
        return _drop(text, lines, parent, key) if key in parent else text
    if key in parent:
        start, end = _value_span(text, lines, parent, key)
        return text[:start] + flow(value) + text[end:]
    entry = f"{flow(key)}: {flow(value)}"
    if parent.fa.flow_style():
        line, col = parent.lc.line, parent.lc.col
        end = _flow_end(text, _offset(lines, line, col)) - 1
        sep = ", " if len(parent) else ""
        return text[:end] + sep + entry + text[end:]
    if not path:  # the top level: the new key goes last
        return text + ("" if text.endswith("\n") or not text else "\n") + entry + "\n"
    first = next(iter(parent.lc.data))
    line, col = parent.lc.key(first)
    at = _offset(lines, line, 0)
    return text[:at] + " " * col + entry + "\n" + text[at:]


def _drop(text: str, lines: list[str], parent: CommentedMap, key: Any) -> str:
    """``text`` without ``key`` of ``parent``: its line (block), or ``key: value`` and a comma (flow)."""
    kline, kcol = parent.lc.key(key)
    if parent[key] is None:  # `key:` and nothing after it
        vline, end = kline, _offset(lines, kline, len(lines[kline].rstrip("\n")))
    else:
        vline = parent.lc.value(key)[0]
        end = _value_span(text, lines, parent, key)[1]
    if vline != kline:
        raise EditError(f"the value of {key!r} on line {kline + 1} spans lines (edit it by hand)")
    start = _offset(lines, kline, kcol)
    if not parent.fa.flow_style():
        return text[:_offset(lines, kline, 0)] + text[_offset(lines, kline + 1, 0):]
    after = re.match(r"\s*,\s*", text[end:])
    if after:
        return text[:start] + text[end + after.end():]
    before = re.search(r",\s*$", text[:start])
    return text[:before.start() if before else start] + text[end:]


def apply(text: str, changes: list[tuple[list[Any], Any, Any]]) -> str:
    """``text`` with the ``(path, key, value)`` changes made, each checked to have landed."""
    for where, key, value in changes:
        text = set_key(text, where, key, value)
    try:
        doc = load(text)
    except YAMLError as exc:
        raise EditError(f"the edit would break the file ({str(exc).splitlines()[0]}); edit it by hand") from None
    for where, key, value in changes:
        node = doc
        for part in [*where, key]:  # a dropped key may have taken its parent along
            node = node.get(part, DROP) if isinstance(node, dict) else DROP
        if (node is not DROP) if value is DROP else plain(node) != value:
            raise EditError(f"the edit of {'.'.join(map(str, [*where, key]))} did not land (edit it by hand)")
    return text


def plain(node: Any) -> Any:
    """A round-trip node as plain dicts, lists and scalars."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node


__all__ = ["DROP", "EditError", "apply", "flow", "load", "plain", "set_key"]
