"""Telemetry over clickhouse-connect's HTTP client: against the ClickHouse HTTP-interface
stand-in (real engine behind it), through outages, and against a real server when
``CLICKHOUSE_TEST_URL`` is set."""

from __future__ import annotations

import asyncio
import os
import uuid

import httpx
import openai
import orjson
import pytest

from gateway.config.telemetry import ClickHouseSettings
from gateway.proxy.server import BackgroundServer
from gateway.telemetry.clickhouse import ClickHouseStore, ReadOnlyClient, redact_dsn
from loadtest.clickhouse_standin import ClickHouseHTTPStandIn
from tests.support.gateway import serve
from tests.support.standin import standin  # noqa: F401
from tests.support.telemetry import CHDB_DIR, isolate_telemetry_data, tdb, telemetry_yaml, wait_for  # noqa: F401

MODELS = """
backends:
  mock:
    type: mock
    mock: {ttft_ms: 0, itl_ms: 0, tokens: 4, chunk_tokens: 2}
models:
  mock-gpt: {targets: [{backend: mock}]}
"""


def count(ch: ClickHouseHTTPStandIn, database: str, sql: str) -> list[dict]:
    client = ReadOnlyClient(ClickHouseSettings(database=database), ch.dsn(database))
    try:
        data = client.query(sql, "JSONEachRow")
    finally:
        client.close()
    return [orjson.loads(line) for line in data.splitlines()]


def gateway_for(dsn: str, database: str, log_dir, **kw) -> BackgroundServer:
    srv = serve(MODELS + telemetry_yaml(dsn, database, log_dir, **kw))
    srv.__enter__()
    return srv


def test_rows_reach_a_server_over_http(standin, tdb, tmp_path):
    dsn = standin.dsn(tdb)
    srv = gateway_for(dsn, tdb, tmp_path / "log")
    try:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-x", max_retries=0)
        client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-request-id": "http-1"})
        list(client.chat.completions.create(model="mock-gpt", stream=True, messages=[{"role": "user", "content": "hi"}]))
        stats = httpx.post(f"{srv.url}/admin/telemetry/flush").json()
        assert stats["flushed"] and stats["written"] == 2 and stats["ingester"]["store"] == "up"
        assert stats["ingester"]["target"] == redact_dsn(dsn)
        assert "s3cret" not in httpx.get(f"{srv.url}/admin/telemetry").text
        rows = count(standin, tdb, "SELECT client_request_id, stream, completion_tokens, attempts FROM llm_requests "
                                   "ORDER BY stream")
        assert rows == [{"client_request_id": "http-1", "stream": False, "completion_tokens": 4, "attempts": 1},
                        {"client_request_id": "", "stream": True, "completion_tokens": 4, "attempts": 1}]
        inserts = [e for e in standin.log if e["sql"].endswith(b"FORMAT JSONCompactEachRow")]
        assert len(inserts) >= 2 and all(e["content_encoding"] == "lz4" and e["user"] == "writer" for e in inserts)
        assert all(e["settings"]["insert_deduplication_token"] for e in inserts)
        # ops queries through the gateway go over HTTP too, with readonly=1
        resp = httpx.post(f"{srv.url}/admin/query", json={"saved": "latency-by-model", "format": "jsonl"})
        assert resp.status_code == 200 and orjson.loads(resp.content)["requests"] == 2
        assert standin.log[-1]["settings"]["readonly"] == "1"
    finally:
        srv.__exit__(None, None, None)


def test_wrong_password_keeps_the_record_and_says_why(standin, tdb, tmp_path):
    srv = gateway_for(standin.dsn(tdb, password="wrong-pw"), tdb, tmp_path / "log")
    try:
        openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-x", max_retries=0).chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
        stats = httpx.post(f"{srv.url}/admin/telemetry/flush", params={"timeout": 1}).json()
        ingester = stats["ingester"]
        assert not stats["flushed"] and stats["written"] == 1 and stats["lost"] == 0
        assert ingester["store"] == "down" and "516" in ingester["last_error"]
        assert "wrong-pw" not in ingester["last_error"] and "wrong-pw" not in ingester["target"]
    finally:
        srv.__exit__(None, None, None)


async def _send(url: str, n: int, concurrency: int = 32) -> list[str]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-x", max_retries=0)
    sem = asyncio.Semaphore(concurrency)
    ids = []

    async def one(i: int) -> None:
        rid = str(uuid.uuid4())
        async with sem:
            if i % 2:
                await client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": f"m{i}"}],
                                                     extra_headers={"x-request-id": rid})
            else:
                stream = await client.chat.completions.create(
                    model="mock-gpt", stream=True, messages=[{"role": "user", "content": f"m{i}"}],
                    extra_headers={"x-request-id": rid})
                async for _ in stream:
                    pass
        ids.append(rid)

    await asyncio.gather(*(one(i) for i in range(n)))
    await client.close()
    return ids


def test_outage_1000_requests_then_exactly_1000_rows(standin, tdb, tmp_path):
    """Store unreachable → 1,000 requests → store back: exactly 1,000 rows, none duplicated,
    even though two inserts land and are then reported as failed (the batch is re-sent with the
    same deduplication token)."""
    dsn = standin.dsn(tdb)
    standin.stop()  # connection refused from now on
    srv = gateway_for(dsn, tdb, tmp_path / "log", batch_rows=100, flush_interval_ms=50,
                      retry_initial_ms=50, retry_max_ms=200)
    try:
        ids = asyncio.run(_send(srv.url, 1000))
        assert len(set(ids)) == 1000
        stats = httpx.post(f"{srv.url}/admin/telemetry/flush", params={"timeout": 1}).json()
        assert not stats["flushed"] and stats["written"] == 1000 and stats["lost"] == 0
        assert stats["ingester"]["store"] == "down" and stats["ingester"]["rows"] == 0
        standin.commit_then_fail = 2  # ambiguous failures: committed, but the client hears an error
        standin.start()  # same port
        stats = httpx.post(f"{srv.url}/admin/telemetry/flush", params={"timeout": 60}).json()
        assert stats["flushed"] and stats["ingester"]["store"] == "up", stats
        assert stats["ingester"]["failures"] >= 3  # the outage, plus the two ambiguous ones
        rows = count(standin, tdb, "SELECT count() AS n, uniqExact(request_id) AS u FROM llm_requests")
        assert rows == [{"n": 1000, "u": 1000}]
        got = count(standin, tdb, "SELECT client_request_id AS id FROM llm_requests")
        assert {r["id"] for r in got} == set(ids)
        (roll,) = count(standin, tdb, "SELECT countMerge(requests) AS n FROM llm_requests_1m")
        assert roll["n"] == 1000  # the rollup saw each batch once too
        (att,) = count(standin, tdb, "SELECT count() AS n FROM llm_attempts")
        assert att["n"] == 1000
    finally:
        srv.__exit__(None, None, None)


@pytest.mark.skipif(not os.environ.get("CLICKHOUSE_TEST_URL"),
                    reason="set CLICKHOUSE_TEST_URL=http://user:pass@host:8123 to test against a real server")
def test_against_a_real_server(tmp_path):
    base = os.environ["CLICKHOUSE_TEST_URL"].rstrip("/")
    database = "llm_gateway_test_" + uuid.uuid4().hex[:8]
    dsn = f"{base}/{database}"
    srv = gateway_for(dsn, database, tmp_path / "log")
    try:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-x", max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
        assert httpx.post(f"{srv.url}/admin/telemetry/flush").json()["written"] == 3
        resp = httpx.post(f"{srv.url}/admin/query", json={"sql": "SELECT count() AS n FROM llm_requests",
                                                          "format": "jsonl"})
        assert resp.json() == {"n": 3}
    finally:
        srv.__exit__(None, None, None)
        store = ClickHouseStore(ClickHouseSettings(), base)
        try:
            store.ensure().command(f"DROP DATABASE IF EXISTS `{database}`")
        finally:
            store.close()


def test_standin_speaks_the_clickhouse_http_interface(standin, tdb):
    """The stand-in is only useful if clickhouse-connect's HTTP client cannot tell it from a
    server: handshake, parameters, Native and RowBinary inserts, headers, error bodies."""
    import datetime
    import struct

    import clickhouse_connect

    assert httpx.get(f"{standin.url}/ping").text == "Ok.\n"
    client = clickhouse_connect.get_client(host="127.0.0.1", port=standin.port, username="writer",
                                           password="s3cret-pw", compress="lz4")
    try:
        assert client.query("SELECT {a:UInt8} + {b:UInt8} AS s", parameters={"a": 2, "b": 3}).result_rows == [(5,)]
        client.command(f"CREATE DATABASE IF NOT EXISTS {tdb}")
        client.command(f"CREATE TABLE {tdb}.t (id UInt32, name String, ts DateTime64(3, 'UTC'), "
                       "m Map(String, String), f Nullable(Float64)) ENGINE = MergeTree ORDER BY id")
        ts = datetime.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=datetime.UTC)
        client.insert(f"{tdb}.t", [[1, "native", ts, {"k": "v"}, None]], column_names=["id", "name", "ts", "m", "f"])
        row_binary = struct.pack("<I", 2) + bytes([7]) + b"rowbin!"
        client.raw_insert(f"{tdb}.t", ["id", "name"], row_binary, fmt="RowBinary")
        rows = client.query(f"SELECT id, name, toUnixTimestamp64Milli(ts), m, f FROM {tdb}.t ORDER BY id").result_rows
        assert rows == [(1, "native", 1714564800123, {"k": "v"}, None), (2, "rowbin!", 0, {}, None)]
    finally:
        client.close()
    auth = ("writer", "s3cret-pw")
    ok = httpx.get(standin.url, params={"query": f"SELECT count() FROM {tdb}.t", "default_format": "JSONEachRow"},
                   auth=auth)
    assert ok.json() == {"count()": 2} and ok.headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert "read_rows" in orjson.loads(ok.headers["X-ClickHouse-Summary"]) and ok.headers["X-ClickHouse-Query-Id"]
    assert ok.headers["X-ClickHouse-Timezone"] == "UTC"
    bad = httpx.post(standin.url, content=b"SELEKT 1", auth=auth)
    assert bad.status_code >= 400 and bad.headers["X-ClickHouse-Exception-Code"] == "62"
    assert bad.text.startswith("Code: 62. DB::Exception:") and "(SYNTAX_ERROR)" in bad.text
    denied = httpx.post(standin.url, content=b"SELECT 1", auth=("writer", "nope"))
    assert denied.status_code == 401 and denied.headers["X-ClickHouse-Exception-Code"] == "516"
