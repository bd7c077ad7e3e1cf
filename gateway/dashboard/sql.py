"""Running the dashboard's SQL: read-only, parameterised, through a ``ReadOnlyClient`` like
``POST /admin/query`` (``readonly=1``, the ``telemetry.queries`` limits), answers decoded from ClickHouse's
``JSON`` format into plain Python values.

64-bit integers may come back quoted (``output_format_json_quote_64bit_integers``, on in older
servers); they are turned back into numbers from the column types in the answer's ``meta``.
NaN and infinities (e.g. a quantile over no rows) become ``None``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from gateway.telemetry.queries import check_read_only

Rows = list[dict[str, Any]]
Fetch = Callable[[str, dict], Rows]  # fetch(sql, params) -> rows

_INT_RE = re.compile(r"^(?:Nullable\()?(?:LowCardinality\()?U?Int(?:8|16|32|64|128|256)\)*$")
_FLOAT_RE = re.compile(r"^(?:Nullable\()?(?:Float32|Float64|Decimal.*)\)*$")
_ARRAY_RE = re.compile(r"^Array\((.*)\)$")


def _convert(value: Any, ctype: str) -> Any:
    if value is None:
        return None
    m = _ARRAY_RE.match(ctype)
    if m and isinstance(value, list):
        return [_convert(v, m.group(1)) for v in value]
    if _INT_RE.match(ctype):
        return int(value) if isinstance(value, str) else value
    if _FLOAT_RE.match(ctype):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return None
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return None
        return value
    return value


def decode_json(data: bytes) -> Rows:
    """Rows of a ClickHouse ``JSON``-format answer, numbers as numbers."""
    doc = orjson.loads(data)
    types = {c["name"]: c["type"] for c in doc.get("meta", ())}
    return [{k: _convert(v, types.get(k, "")) for k, v in row.items()} for row in doc.get("data", ())]


def client_fetch(client) -> Fetch:
    """A ``fetch(sql, params)`` over a ``ReadOnlyClient`` or a lane's ``TaggedClient``
    (blocking; run it off the event loop)."""

    def fetch(sql: str, params: dict) -> Rows:
        return decode_json(client.query(check_read_only(sql), "JSON", params))

    return fetch
