"""The embedded engine (chDB) under the HTTP interface: one statement at a time per thread.

Each statement gets a connection of its own (chDB keeps ``USE`` and ``SET`` per connection, so
one request's settings — ``readonly`` above all, which cannot be unset — never reach another),
on a bounded pool of threads: chDB releases the GIL while a query runs, so a heavy ops query
holds one thread, not the server. One connection stays open from ``open()`` to ``close()``:
without it chDB would start and stop the whole engine around every statement.

chDB hosts one data directory per process (and one process per directory): every chDB user of
a process must name the same directory. ``chdb`` is imported only by ``open()``.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gateway.store.wire import DEFAULT_FORMAT, Statement, StoreError, quote

DEFAULT_THREADS = 8
# chDB's Python() table function reads objects of the process that runs the query: never the store's.
FORCED_SETTINGS = {"allow_python_table_function": "0"}


@dataclass
class Result:
    """A statement's answer: ``data`` in ``format`` (empty for an INSERT) and its summary."""

    data: bytes
    format: str
    summary: dict[str, int]


class ChdbEngine:
    """``open()``, then ``execute(statement)`` from the pool's threads (``submit``), ``close()``.

    ``path``: the chDB data directory. ``threads``: statements that run at once (more wait).
    ``tmp_dir``: where an INSERT's data is staged for ``INSERT … FROM INFILE`` (default: the
    system's temporary folder). Counters: ``statements``, ``inserts``, ``errors``.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int = DEFAULT_THREADS, tmp_dir: str | None = None):
        self.path = os.path.realpath(path)
        self.tmp_dir = tmp_dir
        self.threads = threads
        self.statements = 0
        self.inserts = 0
        self.errors = 0
        self._chdb: Any = None
        self._anchor: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def open(self) -> ChdbEngine:
        """Start the engine on ``path`` (creating it). Raises ``ImportError`` without chDB, and
        ``RuntimeError`` when another process holds the directory. Opening an open engine
        does nothing."""
        if self._anchor is not None:
            return self
        import chdb

        os.makedirs(self.path, exist_ok=True)
        if self.tmp_dir:
            os.makedirs(self.tmp_dir, exist_ok=True)
        self._chdb = chdb
        self._anchor = chdb.connect(self.path)
        self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="store-query")
        return self

    def close(self) -> None:
        """Stop taking statements, wait for the running ones, and release the engine."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        anchor, self._anchor = self._anchor, None
        if anchor is not None:
            anchor.close()

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise StoreError("Code: 210. DB::Exception: The store is shutting down. (NETWORK_ERROR)", 503)
        return self._executor

    def execute(self, stmt: Statement) -> Result:
        """Run ``stmt`` on a connection of its own (blocking). Raises ``StoreError``."""
        with self._lock:
            self.statements += 1
        staged = None
        try:
            if stmt.insert is not None:
                staged = self._stage(stmt.text[stmt.insert.end():])
                head = stmt.insert
                sql = (b"INSERT INTO " + head.group("target") + b" FROM INFILE " + quote(staged).encode()
                       + b" " + (head.group("settings") or b"") + b" FORMAT " + head.group("fmt"))
                fmt = DEFAULT_FORMAT
            else:
                sql, fmt = stmt.text, stmt.format
            started = time.perf_counter()
            result = self._run(stmt, sql.decode("utf-8", "surrogateescape"), fmt)
        except StoreError:
            self._count_error()
            raise
        except Exception as exc:
            self._count_error()
            raise StoreError.from_engine(exc) from None
        finally:
            if staged:
                os.unlink(staged)
        data = result.bytes()
        summary = {"read_rows": result.rows_read(), "read_bytes": result.bytes_read(), "written_rows": 0,
                   "written_bytes": 0, "total_rows_to_read": 0, "result_rows": 0, "result_bytes": len(data),
                   "elapsed_ns": int((time.perf_counter() - started) * 1e9)}
        if stmt.insert is not None:
            # an INFILE insert reads exactly the rows it writes
            summary["written_rows"], summary["written_bytes"] = summary["read_rows"], summary["read_bytes"]
            with self._lock:
                self.inserts += 1
            return Result(b"", "", summary)
        return Result(data, fmt, summary)

    def _run(self, stmt: Statement, sql: str, fmt: str) -> Any:
        if self._anchor is None:
            raise StoreError("Code: 210. DB::Exception: The store is not open. (NETWORK_ERROR)", 503)
        conn = self._chdb.connect(self.path)
        try:
            if stmt.database:
                conn.query(f"USE `{stmt.database.replace('`', '')}`", DEFAULT_FORMAT)
            # the request's settings, then the server's, then readonly (once it is set, no other
            # setting may change), all in one statement: each statement is a trip through the engine
            settings = {k: v for k, v in stmt.settings.items() if k != "readonly"}
            settings.update(FORCED_SETTINGS)
            if "readonly" in stmt.settings:
                settings["readonly"] = stmt.settings["readonly"]
            if settings:
                conn.query("SET " + ", ".join(f"{k} = {quote(v)}" for k, v in settings.items()), DEFAULT_FORMAT)
            return conn.query(sql, fmt, params=stmt.params)
        finally:
            conn.close()

    def _stage(self, data: bytes) -> str:
        fd, path = tempfile.mkstemp(prefix="insert-", suffix=".data", dir=self.tmp_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    def _count_error(self) -> None:
        with self._lock:
            self.errors += 1

