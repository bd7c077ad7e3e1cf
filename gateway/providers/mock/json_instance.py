"""A small valid instance of a JSON Schema, for the mock backend's tool calls and structured output.

The mock answers a request that carries a tool's ``parameters`` or a ``response_format``
schema with JSON that the schema accepts, so an application can exercise its parsing offline.
The instance is minimal (required properties only, ``minItems`` items, the first ``enum`` /
``const`` / ``anyOf`` / ``oneOf`` branch) and deterministic: strings are words chosen by a
seed. Handled: ``type`` (one or a list), ``enum``, ``const``, ``properties`` + ``required``,
``items`` / ``prefixItems`` with ``minItems`` / ``maxItems``, ``minLength`` / ``maxLength``,
``minimum`` / ``maximum`` (exclusive too), ``multipleOf``, common string ``format`` values,
``allOf`` (merged), ``anyOf`` / ``oneOf`` and local ``$ref`` (``#/$defs/…``,
``#/definitions/…``). Not handled: ``pattern`` (the string is a plain word) and conditional
keywords (``if``/``then``, ``not``, ``dependentSchemas``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# Strings for the ``format`` values applications ask for most; each one is valid for it.
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri-reference": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "json-pointer": "/a",
    "regex": "a",
}
_MAX_DEPTH = 32  # a recursive schema ($ref to itself with a required field) stops here
_BUDGET = 20_000  # values built per instance: a request's schema cannot make the mock build forever
_MAX_LENGTH = 100_000  # characters of one string


class _TooLarge(Exception):
    """The schema asks for more than ``_BUDGET`` values (``minItems: 1e9``, exponential ``$ref``s)."""


def instance(schema: Any, words: Sequence[str] = ("value",), seed: int = 0) -> Any:
    """Return a JSON value valid against ``schema`` (a dict; ``True``/``{}`` accept anything).

    ``words``: the vocabulary strings are drawn from; ``seed`` picks among them.
    """
    try:
        return _Builder(schema if isinstance(schema, dict) else {}, words or ("value",), seed).build(schema, 0)
    except (_TooLarge, RecursionError):
        return {}  # an instance that large is no use to a test; answer something small instead


class _Builder:
    __slots__ = ("_root", "_words", "_seed", "_budget")

    def __init__(self, root: dict, words: Sequence[str], seed: int):
        self._root = root
        self._words = words
        self._seed = seed
        self._budget = _BUDGET

    def _word(self) -> str:
        self._seed += 7
        return self._words[self._seed % len(self._words)].strip() or "value"

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self._root
        for part in ref[1:].split("/")[1:] if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node.get(part, {})
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node

    def _merge(self, schema: dict, depth: int) -> dict:
        """Fold ``$ref`` and ``allOf`` into one schema (later keywords refine earlier ones)."""
        if isinstance(schema.get("$ref"), str) and depth < _MAX_DEPTH:
            target = self._resolve(schema["$ref"])
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**self._merge(target, depth + 1), **rest} if isinstance(target, dict) else rest
        if isinstance(schema.get("allOf"), list):
            merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                if isinstance(part, dict):
                    part = self._merge(part, depth + 1)
                    props = {**part.get("properties", {}), **merged.get("properties", {})}
                    required = list(dict.fromkeys([*part.get("required", []), *merged.get("required", [])]))
                    merged = {**part, **merged}
                    if props:
                        merged["properties"] = props
                    if required:
                        merged["required"] = required
            schema = merged
        return schema

    def build(self, schema: Any, depth: int) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise _TooLarge
        if not isinstance(schema, dict):
            return None if schema is False else {}
        schema = self._merge(schema, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
                branch = branches[0] if isinstance(branches[0], dict) else {}
                return self.build({**rest, **self._merge(branch, depth + 1)}, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
        if kind is None:
            kind = self._guess(schema)
        if depth >= _MAX_DEPTH:
            return {"object": {}, "array": [], "string": "", "integer": 0, "number": 0, "boolean": True}.get(kind)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            return self._number(schema, kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return {}

    @staticmethod
    def _guess(schema: dict) -> str | None:
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if any(k in schema for k in ("minLength", "maxLength", "format", "pattern")):
            return "string"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
            return "number"
        return None

    def _object(self, schema: dict, depth: int) -> dict:
        props = p if isinstance(p := schema.get("properties"), dict) else {}
        out = {}
        for name in schema.get("required") or ():
            out[name] = self.build(props.get(name, schema.get("additionalProperties", {})), depth + 1)
        least = schema.get("minProperties")
        if isinstance(least, int) and len(out) < least:
            for name, sub in props.items():
                if len(out) >= least:
                    break
                out.setdefault(name, self.build(sub, depth + 1))
        return out

    def _array(self, schema: dict, depth: int) -> list:
        prefix = p if isinstance(p := schema.get("prefixItems"), list) else []
        items = schema.get("items", {})
        if isinstance(items, list):  # draft-04..2019 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        least = n if isinstance(n := schema.get("minItems"), int) else 0
        most = m if isinstance(m := schema.get("maxItems"), int) else None
        count = max(least, len(prefix), 1)
        if count > _BUDGET:
            raise _TooLarge
        if most is not None:
            count = min(count, most)
        out = [self.build(prefix[i] if i < len(prefix) else items, depth + 1) for i in range(count)]
        if schema.get("uniqueItems") and len(out) > 1:
            out = self._make_unique(out, prefix, items, depth)
        return out

    def _make_unique(self, out: list, prefix: list, items: Any, depth: int) -> list:
        seen: list = []
        for i, value in enumerate(out):
            tries = 0
            while value in seen and tries < 64:
                tries += 1
                value = self.build(prefix[i] if i < len(prefix) else items, depth + 1)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    value += tries  # numbers do not vary by seed
            seen.append(value)
        return seen

    def _string(self, schema: dict) -> str:
        fmt = schema.get("format")
        if fmt in _FORMATS:
            return _FORMATS[fmt]
        text = self._word()
        least = n if isinstance(n := schema.get("minLength"), int) else 0
        if least > _MAX_LENGTH:
            raise _TooLarge
        while len(text) < least:
            text += " " + self._word()
        most = schema.get("maxLength")
        if isinstance(most, int):
            text = text[:most]
        return text

    @staticmethod
    def _number(schema: dict, integer: bool) -> int | float:
        lo, lo_open = _bound(schema.get("minimum"), schema.get("exclusiveMinimum"), max)
        hi, hi_open = _bound(schema.get("maximum"), schema.get("exclusiveMaximum"), min)

        def fits(v: float) -> bool:
            return ((lo is None or v > lo or (v == lo and not lo_open))
                    and (hi is None or v < hi or (v == hi and not hi_open)))

        value: float = 0
        if lo is not None and value < lo:
            value = lo
        if hi is not None and value > hi:
            value = hi
        step = schema.get("multipleOf")
        unit = step if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0 \
            else (1 if integer else None)
        if unit is None:
            candidates = [value, value + 1, value - 1]
            if lo is not None and hi is not None:
                candidates.append((lo + hi) / 2)
        else:
            up, down = math.ceil(value / unit), math.floor(value / unit)
            candidates = [k * unit for k in (up, up + 1, down, down - 1)]
        value = next((v for v in candidates if fits(v)), value)
        return int(value) if integer and float(value).is_integer() else value


def _bound(inclusive: Any, exclusive: Any, tighter) -> tuple[float | None, bool]:
    """One side's limit and whether it is open (draft-04's boolean ``exclusive*`` included)."""
    inclusive = inclusive if isinstance(inclusive, (int, float)) and not isinstance(inclusive, bool) else None
    if isinstance(exclusive, bool):
        return inclusive, exclusive and inclusive is not None
    if not isinstance(exclusive, (int, float)):
        return inclusive, False
    if inclusive is None or tighter(inclusive, exclusive) == exclusive:
        return exclusive, True
    return inclusive, False
