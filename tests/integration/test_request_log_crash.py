"""Rows survive process kills with the embedded store: ``kill -9`` of the serving process or of
the ingester under load loses no answered request and duplicates none; ``--workers 2`` on the
embedded store writes every row once. (The same kills with a ClickHouse server:
``test_request_log_crash_server.py``.)

Real processes (``llm-gateway serve``), real signals, real chDB. A request counts as answered
when its whole response reached the client; every answered request must have exactly one row.
Requests in flight at the kill may have a row or not (their client saw an error).
"""

from __future__ import annotations

from tests.support.gateway_process import (
    Gateway,
    assert_exactly_once,
    kill_9_the_ingester_under_load,
    kill_9_the_serving_process_under_load,
    write_config,
)
from tests.support.load import Load
from tests.support.polling import wait_for
from tests.support.telemetry import isolate_telemetry_data  # noqa: F401


def test_kill_9_of_the_serving_process_under_load_loses_and_duplicates_nothing(tmp_path):
    kill_9_the_serving_process_under_load(tmp_path, write_config(tmp_path))


def test_kill_9_of_the_ingester_under_load_loses_and_duplicates_nothing(tmp_path):
    kill_9_the_ingester_under_load(tmp_path, write_config(tmp_path))


def test_workers_2_with_the_embedded_store_write_every_row_once(tmp_path):
    gw = Gateway(write_config(tmp_path), tmp_path / "data", tmp_path / "gw.log", workers=2)
    try:
        with Load([gw.url], threads=4) as load:
            wait_for(lambda: load.count >= 400, timeout=120, what="400 answered requests")
        assert_exactly_once(gw, load)
        writers = [p for p in (tmp_path / "data" / "log").iterdir() if not p.name.startswith(".")]
        assert len(writers) >= 2, "both workers wrote a log of their own"
    finally:
        gw.stop()
