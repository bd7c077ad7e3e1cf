"""The semantic cache's rows in ClickHouse: the row a stored answer becomes, and the look-up.

Entries are rows of ``llm_semantic_cache_d{dims}`` (``gateway.telemetry.vectors``), one table
per embedding dimension. The serving process writes them as table records of its request log
(``RequestLog.emit_row``: the ingester inserts them seconds later, creating the table on its
first row) and reads them through the ``vectors`` query lane: the nearest entry of a tenant,
namespace and key hash, younger than a bound and not expired. A table that does not exist yet
(nothing stored at that dimension) reads as empty.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.telemetry.lanes import VECTORS
from gateway.telemetry.values import format_ts
from gateway.telemetry.vectors import (
    SEMANTIC,
    SEMANTIC_COLUMN_NAMES,
    format_vector,
    is_unknown_table,
    search_params,
    semantic_lookup_sql,
    table_name,
)

TableRow = tuple[str, tuple[str, ...], list[Any]]


@dataclass(frozen=True, slots=True)
class Nearest:
    """The nearest stored entry: its ``entry_id``, cosine ``distance`` to the question and the
    serialized cache entry (``entry``, bytes)."""

    entry_id: str
    distance: float
    entry: bytes


def entry_row(*, tenant: str, namespace: str, model: str, key_hash: str, entry_id: str, request_id: str,
              ts: float, expires: float, embedding_model: str, vector: list[float], question: str,
              entry: bytes) -> TableRow:
    """The ``llm_semantic_cache_d{dims}`` row of one stored answer (``entry``: its wire form)."""
    return (table_name(SEMANTIC, len(vector)), tuple(SEMANTIC_COLUMN_NAMES), [
        tenant, namespace, model, key_hash, entry_id, request_id, format_ts(ts), format_ts(expires),
        embedding_model, format_vector(vector), question, base64.b64encode(entry).decode()])


async def nearest(lanes: Any, *, tenant: str, namespace: str, key_hash: str, vector: list[float],
                  min_ts: float, now: float) -> Nearest | None:
    """The stored entry nearest to ``vector`` among those of ``tenant``, ``namespace`` and
    ``key_hash`` stored at or after ``min_ts`` and not expired at ``now``; None when there is
    none (or no table for this dimension yet). Raises ``QueryBusy`` or the store's error."""
    sql = semantic_lookup_sql(lanes.database, len(vector))
    params = search_params(vector, tenant=tenant, namespace=namespace, key_hash=key_hash, since=format_ts(min_ts),
                           now=format_ts(now))
    try:
        data = await lanes.query(VECTORS, sql, "JSONEachRow", params)
    except Exception as exc:
        if is_unknown_table(exc):
            return None
        raise
    line = data.strip()
    if not line:
        return None
    row = orjson.loads(line.splitlines()[0])
    return Nearest(str(row["entry_id"]), float(row["distance"]), base64.b64decode(row["entry"]))
