"""Ops SQL cannot exhaust the gateway: every ops query runs with the ``telemetry.queries``
limits (memory, rows and bytes read, threads, result rows, time) that the read-only session
cannot lift; ad-hoc SQL, dashboard panels and feedback look-ups run in lanes of their own, a
full lane answers 503 ``busy``, and a query whose HTTP client disconnects is killed. Real chDB
behind a real gateway over real HTTP (a raw socket where the test must hang up mid-query)."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import orjson
import pytest

from gateway.config.telemetry import ClickHouseSettings, QuerySettings
from gateway.proxy.server import BackgroundServer
from gateway.telemetry import QUERY_LANES
from gateway.telemetry.clickhouse import ReadOnlyClient
from tests.support.gateway import serve
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml, wait_for  # noqa: F401

ADMIN = "adm-query-limits-1"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
MODELS = """
server: {admin_key: %s}
backends:
  mock: {type: mock}
models:
  mock-gpt: {targets: [{backend: mock}]}
""" % ADMIN  # noqa: UP031 (YAML braces)
# One block per row, two seconds per block: a minute-long query that checks for cancellation
# between blocks and costs no CPU.
LONG_SQL = "SELECT sleep(2) AS s FROM numbers(30)"


@pytest.fixture
def gateway(tmp_path, tdb):
    started = []

    def start(queries: str = "") -> BackgroundServer:
        extra = f"  queries: {queries}\n" if queries else ""
        text = MODELS + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool", extra=extra)
        srv = serve(text)
        srv.__enter__()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.__exit__(None, None, None)


def admin_query(srv, sql: str, fmt: str = "jsonl", timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{srv.url}/admin/query", json={"sql": sql, "format": fmt}, headers=AUTH, timeout=timeout)


def lanes(srv) -> dict:
    return httpx.get(f"{srv.url}/admin/telemetry", headers=AUTH, timeout=10).json()["queries"]


def test_memory_and_scan_hogs_are_refused_quickly_and_limits_cannot_be_lifted(gateway):
    srv = gateway()
    started = time.monotonic()
    hog = admin_query(srv, "SELECT length(groupArray(number)) FROM numbers(150000000)")
    assert hog.status_code == 400 and hog.json()["error"]["code"] == "query_failed"
    assert "MEMORY_LIMIT_EXCEEDED" in hog.json()["error"]["message"]
    scan = admin_query(srv, "SELECT count() FROM numbers(1000000000000)")
    assert scan.status_code == 400 and "TOO_MANY_ROWS" in scan.json()["error"]["message"]
    assert time.monotonic() - started < 40  # far from the 60 s time limit either would have run into
    # The read-only session cannot raise its own limits.
    lifted = admin_query(srv, "SELECT 1 SETTINGS max_memory_usage = 0")
    assert lifted.status_code == 400 and "READONLY" in lifted.json()["error"]["message"]
    in_force = orjson.loads(admin_query(srv, "SELECT getSetting('max_memory_usage') AS mem, "
                                             "getSetting('max_threads') AS threads, "
                                             "getSetting('max_rows_to_read') AS rows").content)
    assert in_force == {"mem": 1 << 30, "threads": 2, "rows": 1_000_000_000}


def test_configured_limits_apply_to_every_ops_query(gateway, tdb):
    srv = gateway("{max_memory_usage: 67108864, max_threads: 1, max_rows_to_read: 1000, "
                  "max_bytes_to_read: 0, max_result_rows: 3, result_overflow_mode: throw, "
                  "max_execution_time_s: 5}")
    got = orjson.loads(admin_query(srv, "SELECT getSetting('max_memory_usage') AS mem, "
                                        "getSetting('max_threads') AS threads, "
                                        "getSetting('max_execution_time') AS t").content)
    assert got == {"mem": 64 << 20, "threads": 1, "t": 5}
    assert "TOO_MANY_ROWS" in admin_query(srv, "SELECT count() FROM numbers(5000)").json()["error"]["message"]
    many = admin_query(srv, "SELECT number FROM numbers(10)")
    assert many.status_code == 400 and "TOO_MANY_ROWS_OR_BYTES" in many.json()["error"]["message"]
    # The dashboard's queries run with the same limits.
    panel = httpx.get(f"{srv.url}/admin/dashboard/summary", headers=AUTH, timeout=30)
    assert panel.status_code == 200, panel.text
    # ... and so does the client the CLI uses against the store directly.
    client = ReadOnlyClient(ClickHouseSettings(database=tdb), chdb_dsn(), QuerySettings(max_threads=3))
    try:
        assert client.query("SELECT getSetting('max_threads')", "TSV").strip() == b"3"
    finally:
        client.close()


def _raw_post(srv, path: str, payload: dict) -> socket.socket:
    """Send a request on a raw socket and return it unread (closing it hangs up mid-query)."""
    body = orjson.dumps(payload)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Bearer {ADMIN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(head + body)
    return sock


def test_a_long_adhoc_query_holds_up_no_panel_and_dies_with_its_client(gateway):
    srv = gateway("{settings: {max_block_size: 1}, adhoc: {concurrency: 1, queue_wait_s: 0.3}}")
    sock = _raw_post(srv, "/admin/query", {"sql": LONG_SQL, "format": "jsonl"})
    try:
        wait_for(lambda: lanes(srv)["adhoc"]["running"] == 1, what="the long query to start")
        # The ad-hoc lane is full: another ad-hoc query waits its short while, then 503 busy.
        busy = admin_query(srv, "SELECT 1")
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "busy"
        assert lanes(srv)["adhoc"]["busy"] == 1
        # Dashboard panels run in their own lane: answered while the long query runs.
        for panel in ("summary", "timeseries", "options"):
            r = httpx.get(f"{srv.url}/admin/dashboard/{panel}", headers=AUTH, timeout=30)
            assert r.status_code == 200, (panel, r.text)
        assert lanes(srv)["adhoc"]["running"] == 1
    finally:
        sock.close()  # the client goes away
    # The query is killed: its slot comes back long before its minute is up.
    wait_for(lambda: lanes(srv)["adhoc"] == {"concurrency": 1, "running": 0, "waiting": 0, "busy": 1,
                                             "cancelled": 1}, timeout=20, what="the abandoned query to end")
    left = admin_query(srv, "SELECT count() AS n FROM system.processes WHERE query LIKE '%sleep(2)%' "
                            "AND query NOT LIKE '%system.processes%'")
    assert left.status_code == 200 and orjson.loads(left.content) == {"n": 0}


def test_a_full_dashboard_lane_answers_busy_and_frees_up_when_its_query_is_dropped(gateway):
    srv = gateway("{settings: {max_block_size: 1}, dashboard: {concurrency: 1, queue_wait_s: 0.3}}")
    lane = srv.app[QUERY_LANES].lane("dashboard")

    async def occupy():  # a panel query that takes its time, as a slow store would
        return asyncio.ensure_future(lane.run(lambda client: client.query(LONG_SQL, "TSV")))

    task = srv.call(occupy())
    wait_for(lambda: lanes(srv)["dashboard"]["running"] == 1, what="the lane to fill")
    busy = httpx.get(f"{srv.url}/admin/dashboard/summary", headers=AUTH, timeout=30)
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "busy"
    assert busy.json()["error"]["type"] == "server_error"
    assert admin_query(srv, "SELECT 1 AS one").status_code == 200  # the ad-hoc lane is free meanwhile
    srv.loop.call_soon_threadsafe(task.cancel)  # its caller goes away: the query is killed
    wait_for(lambda: lanes(srv)["dashboard"]["running"] == 0 and lanes(srv)["dashboard"]["cancelled"] == 1,
             timeout=20, what="the dropped panel query to end")
    assert httpx.get(f"{srv.url}/admin/dashboard/summary", headers=AUTH, timeout=30).status_code == 200
