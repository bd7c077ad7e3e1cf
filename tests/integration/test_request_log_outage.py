"""The store down for a while under load, then back: the serving process keeps answering, every
record waits in the request log (bounded on disk by ``telemetry.log.max_bytes``, nothing lost),
``/readyz`` says the ingester is behind, and once the store is back the ingester catches up —
every answered request has exactly one row — and deletes what it inserted.

A real ``llm-gateway serve`` process with its supervised ingester, and a ClickHouse server (the
HTTP stand-in in the test process) stopped and restarted on the same port.
"""

from __future__ import annotations

import time

from tests.support.gateway_process import Gateway, assert_exactly_once, write_config
from tests.support.load import Load
from tests.support.polling import wait_for
from tests.support.standin import standin  # noqa: F401
from tests.support.telemetry import isolate_telemetry_data, tdb  # noqa: F401

OUTAGE_S = 20
MAX_BYTES = 64 << 20
SEGMENT_BYTES = 128 << 10
LAG_DEGRADED_S = 3
PAUSE_S = 0.05  # per client: a steady ~60 requests/s that the ingester keeps up with on a busy machine


def test_store_down_under_load_then_back_every_answered_request_has_one_row(tmp_path, standin, tdb):
    config = write_config(tmp_path, dsn=standin.dsn(tdb), telemetry=(
        f"  log: {{max_bytes: {MAX_BYTES}, segment_bytes: {SEGMENT_BYTES}, segment_age_s: 1, "
        f"lag_degraded_s: {LAG_DEGRADED_S}}}\n"))
    gw = Gateway(config, tmp_path / "data", tmp_path / "gw.log")
    try:
        with Load([gw.url], threads=4, pause=PAUSE_S) as load:
            def caught_up() -> bool:  # the start-up backlog is in (the ingester starts seconds after serve)
                s = gw.stats()
                return (s["ingester"] or {}).get("rows", 0) >= 50 and (s["lag_s"] or 0) < 1

            wait_for(caught_up, timeout=90, what="the ingester to catch up with the load")
            # Store up and the ingester keeping up: under steady load /readyz stays ready well past
            # the lag threshold (records are always waiting, but none for long).
            watched = time.monotonic()
            while time.monotonic() - watched < 2 * LAG_DEGRADED_S + 1:
                code, body = gw.readyz()
                assert (code, body["status"]) == (200, "ready"), body

            standin.stop()  # connection refused from now on
            down_at, before = time.monotonic(), load.count
            wait_for(lambda: gw.stats()["ingester"]["store"] == "down", timeout=30, what="the ingester to see it down")

            def behind() -> bool:
                code, body = gw.readyz()
                return code == 200 and body["status"] == "degraded" and "behind" in body["reason"]

            wait_for(behind, timeout=60, what="/readyz to say the ingester is behind (still serving: 200)")
            peak = 0

            def outage_over() -> bool:
                nonlocal peak
                s = gw.stats()
                assert s["lost"] == 0 and s["accepting"] and not s["full"], s
                assert s["log_bytes"] <= MAX_BYTES
                peak = max(peak, s["log_bytes"])
                return time.monotonic() - down_at >= OUTAGE_S

            wait_for(outage_over, timeout=OUTAGE_S + 60, interval=0.5, what=f"{OUTAGE_S} s of outage")
            during = load.count - before
            assert during >= 300, f"only {during} requests answered while the store was down"
            assert peak > 2 * SEGMENT_BYTES  # the records of the outage waited in several segments

            standin.start()  # same port
            after = load.count
            wait_for(lambda: load.count >= after + 100, timeout=60, what="100 more answered requests")
        assert load.failed == 0 and load.refused == 0, load.statuses
        assert_exactly_once(gw, load)

        # caught up: nothing lost, the log's segments deleted, ready again
        stats = gw.stats()
        assert stats["written"] == load.count and stats["lost"] == 0, stats
        assert stats["ingester"]["failures"] >= 1
        wait_for(lambda: gw.stats()["log_bytes"] <= SEGMENT_BYTES, timeout=60, what="ingested segments deleted")
        wait_for(lambda: gw.readyz() == (200, {**gw.readyz()[1], "status": "ready"}), timeout=60, what="ready")
    finally:
        gw.stop()
