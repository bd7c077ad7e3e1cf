"""Flush a gateway's request log into the store and read its rows back from chDB."""

from __future__ import annotations

import httpx
import orjson

from gateway.proxy.server import BackgroundServer
from tests.support.telemetry import chdb_client


def select(database: str, sql: str) -> list[dict]:
    """Rows as ClickHouse renders them in JSONEachRow (UUID/DateTime64 as text)."""
    client = chdb_client(database)
    try:
        data = client.raw_query(sql, fmt="JSONEachRow", settings={"output_format_json_quote_64bit_integers": 0})
    finally:
        client.close()
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def flush(srv: BackgroundServer, headers: dict | None = None) -> dict:
    resp = httpx.post(f"{srv.url}/admin/telemetry/flush", headers=headers or {}, timeout=30)
    assert resp.status_code == 200, resp.text
    stats = resp.json()
    assert stats["flushed"] and stats["lost"] == 0, stats
    return stats
