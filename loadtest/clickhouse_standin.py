"""A ClickHouse server for the tests and the telemetry benchmark: the package's HTTP interface
over chDB (``gateway.store.http_interface``), writable, with fault injection.

No modern ClickHouse server installs here (Debian's is 18.16, which clickhouse-connect cannot
talk to), so tests that need "a ClickHouse server" use this. On top of the interface:

- ``stop()`` / ``start()``: connection refused while stopped, the same port after;
- ``fail_inserts``: answer 503 to an INSERT before touching the engine;
- ``commit_then_fail``: that many INSERTs are committed, then answered 500 (an ambiguous
  failure a retry must not duplicate);
- ``log``: every request (user, ``Content-Encoding``, settings, the statement's first line).

chDB hosts one data directory per process: the stand-in must use the directory every other
chDB client of the test process uses.
"""

from __future__ import annotations

import threading
from typing import Any

from gateway.store.engine import Result
from gateway.store.http_interface import ClickHouseHTTPInterface
from gateway.store.wire import Statement, StoreError


class ClickHouseHTTPStandIn(ClickHouseHTTPInterface):
    """``with ClickHouseHTTPStandIn(chdb_dir) as ch: ch.url`` → ``http://127.0.0.1:PORT``.

    ``user``/``password``: required credentials (``password=""`` accepts any request as
    ``default``). Counters: ``inserts`` (committed INSERT statements), ``requests``.
    """

    def __init__(self, chdb_dir: str, user: str = "default", password: str = "", port: int = 0):
        super().__init__(chdb_dir, port=port, user=user, password=password, display_name="standin")
        self.fail_inserts = False
        self.commit_then_fail = 0
        self.log: list[dict[str, Any]] = []
        self._faults = threading.Lock()

    def observe(self, entry: dict[str, Any]) -> None:
        self.log.append(entry)

    def before_execute(self, stmt: Statement) -> None:
        if stmt.insert is not None and self.fail_inserts:
            raise StoreError("Code: 242. DB::Exception: Table is in readonly mode (stand-in outage). "
                             "(TABLE_IS_READ_ONLY)", 503)

    def after_execute(self, stmt: Statement, result: Result) -> None:
        if stmt.insert is None:
            return
        with self._faults:
            if self.commit_then_fail <= 0:
                return
            self.commit_then_fail -= 1
        raise StoreError("Code: 209. DB::Exception: Timeout exceeded while writing to socket "
                         "(stand-in: the insert was committed). (SOCKET_TIMEOUT)", 500)


def main() -> None:
    """``python -m loadtest.clickhouse_standin --dir DIR --port PORT``: serve until interrupted
    (a ClickHouse-compatible store in its own process, e.g. for benchmarks)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="ClickHouse HTTP-interface stand-in over chDB")
    parser.add_argument("--dir", required=True, help="chDB data directory")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--user", default="default")
    parser.add_argument("--password", default="")
    args = parser.parse_args()
    standin = ClickHouseHTTPStandIn(args.dir, args.user, args.password, args.port).start()
    print(f"ClickHouse stand-in on {standin.url} over chDB {standin.chdb_dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    standin.stop()


if __name__ == "__main__":
    main()
