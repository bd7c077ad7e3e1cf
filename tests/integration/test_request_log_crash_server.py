"""Rows survive process kills with a ClickHouse server as the store (the HTTP stand-in: the
package's ClickHouse HTTP interface over chDB, in the test process): ``kill -9`` of the serving
process, and ``kill -9`` of the ingester three times, under load — every answered request has
exactly one row, none is lost, none duplicated. The same steps as the embedded-store tests
(``test_request_log_crash.py``); here the ingester inserts over HTTP with its deduplication
tokens, so a batch re-sent after the kill is deduplicated by the server, not by chDB in-process.
"""

from __future__ import annotations

from tests.support.gateway_process import (
    kill_9_the_ingester_under_load,
    kill_9_the_serving_process_under_load,
    write_config,
)
from tests.support.standin import standin  # noqa: F401
from tests.support.telemetry import isolate_telemetry_data, tdb  # noqa: F401


def test_kill_9_of_the_serving_process_with_a_server_store(tmp_path, standin, tdb):
    kill_9_the_serving_process_under_load(tmp_path, write_config(tmp_path, dsn=standin.dsn(tdb)))
    assert standin.inserts > 0  # the rows went to the server, not to an embedded store


def test_kill_9_of_the_ingester_with_a_server_store(tmp_path, standin, tdb):
    kill_9_the_ingester_under_load(tmp_path, write_config(tmp_path, dsn=standin.dsn(tdb)))
    assert standin.inserts > 0
    assert not (tmp_path / "data" / "clickhouse").exists()  # nothing embedded was opened
