"""``llm-gateway store``: the embedded telemetry store served alone, in the foreground.

Opens chDB on the data folder's ``clickhouse/`` (or the config's ``chdb://`` DSN), migrates the
schema, serves ClickHouse's HTTP interface on a loopback port (``--port``, default a free one)
and writes ``<data_dir>/store.json`` so readers find it; on SIGTERM/SIGINT it removes the file
and stops. Read-only over HTTP unless ``--writable`` (then a gateway may point
``telemetry.clickhouse.dsn`` at it as at a server; for tests and single-user hosts: a writable
port lets whoever reaches it read and write the host's files through table functions).
"""

from __future__ import annotations

import signal
import threading

import click

from gateway.cli.store_client import DATA_DIR_OPTION
from gateway.cli.support import config_option, fail, load_cli_config, say


@click.command()
@config_option
@DATA_DIR_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port (0: a free one; store.json names it).")
@click.option("--writable", is_flag=True, help="Accept writes and DDL over HTTP too.")
def store(config_path: str | None, data_dir: str | None, host: str, port: int, writable: bool) -> None:
    """Serve the embedded telemetry store over ClickHouse's HTTP interface until SIGTERM/SIGINT."""
    from gateway.store.availability import embedded_available, not_queryable_message
    from gateway.store.discovery import discovery_path
    from gateway.telemetry.clickhouse import parse_dsn, redact_dsn

    snapshot = load_cli_config(config_path)
    t = snapshot.config.telemetry
    ddir = t.resolved_data_dir(data_dir)
    dsn = t.resolved_dsn(ddir)
    if not dsn.startswith("chdb://"):
        fail(f"telemetry.clickhouse.dsn names a ClickHouse server ({redact_dsn(dsn)}); "
             "`store` serves the embedded store")
    if not embedded_available():
        fail(not_queryable_message())
    from gateway.store.embedded import StoreBusy, StoreServer

    server = StoreServer(ddir, host, port, settings=t.clickhouse, chdb_dir=parse_dsn(dsn).path, writable=writable)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before start-up: a stop while starting is clean too
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except StoreBusy as exc:
        fail(f"{exc}: stop it first, or read through it")
    try:
        mode = "read-write" if writable else "read-only"
        say(f"store: {server.chdb_dir} served at {server.url} ({mode}, database {server.database}); "
            f"{discovery_path(ddir)} names it")
        stop.wait()
    finally:
        server.stop()
    say("store: stopped")
