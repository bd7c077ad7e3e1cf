"""All ClickHouse I/O: connect through clickhouse-connect, migrate, insert batches, query.

The same code serves a ClickHouse server (``http://`` / ``https://`` DSN, clickhouse-connect's
HTTP client) and the embedded engine (``chdb://DIR``, clickhouse-connect's chDB backend).
Batches are inserted as ``JSONCompactEachRow`` through ``raw_insert`` with an insert
deduplication token per batch and table, so a batch retried after an ambiguous failure, or
replayed from the spool, lands once. Insert bodies to a server are lz4-compressed.

Both clients are synchronous: a ``ClickHouseStore`` is used by one thread at a time (the
telemetry writer). Read-only ops queries use a separate ``ReadOnlyClient``.

chDB allows one data directory per process (and one process per directory): every client
of a process must use the same ``chdb://`` path, and a second process gets "Cannot lock file".
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from gateway.config.telemetry import ClickHouseSettings, QuerySettings
from gateway.store.availability import require_embedded
from gateway.telemetry import vectors
from gateway.telemetry.schema import SchemaOptions, apply_migrations
from gateway.telemetry.ttl import apply_ttl

log = logging.getLogger("gateway.telemetry")
# clickhouse-connect warns on every failed HTTP attempt; the sink reports store failures itself
# (once per outage, with the reason), so keep the driver's transport chatter out of the log.
logging.getLogger("clickhouse_connect.driver._backend.http_sync").setLevel(logging.ERROR)

INSERT_FORMAT = "JSONCompactEachRow"


@dataclass(frozen=True)
class Target:
    """A parsed DSN. ``kind``: ``"http"`` or ``"chdb"``. ``path``: chDB directory (absolute)."""

    kind: str
    dsn: str
    database: str
    host: str = ""
    port: int = 0
    secure: bool = False
    username: str = "default"
    password: str = ""
    path: str = ""

    @property
    def display(self) -> str:
        """The DSN without its password (safe to log and show)."""
        return redact_dsn(self.dsn)


def redact_dsn(dsn: str) -> str:
    """``http://user:secret@host/db`` → ``http://user:***@host/db``."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc}", parts.path, parts.query, parts.fragment))


def parse_dsn(dsn: str, database: str | None = None) -> Target:
    """Parse an ``http(s)://user:pass@host:port/db`` or ``chdb://DIR`` DSN.

    ``chdb:///abs/dir`` is absolute; ``chdb://./rel`` or ``chdb://rel`` is relative to the
    current directory. ``database`` overrides the DSN's path. Raises ``ValueError``.
    """
    if dsn.startswith("chdb://"):
        raw = dsn[len("chdb://"):].split("?", 1)[0]
        if not raw:
            raise ValueError("chdb:// DSN needs a directory (chdb:///abs/dir)")
        path = str(Path(raw).absolute())
        return Target(kind="chdb", dsn=f"chdb://{path}", database=database or "default", path=path)
    parts = urlsplit(dsn)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("DSN must be http(s)://[user[:password]@]host[:port][/database] or chdb://DIR")
    secure = parts.scheme == "https"
    db = database or parts.path.strip("/") or "default"
    return Target(kind="http", dsn=dsn, database=db, host=parts.hostname,
                  port=parts.port or (8443 if secure else 8123), secure=secure,
                  username=unquote(parts.username) if parts.username else "default",
                  password=unquote(parts.password) if parts.password else "")


def connect(target: Target, settings: ClickHouseSettings | None = None, *, database: str | None = None,
            client_settings: dict[str, Any] | None = None, direct: bool = False):
    """A clickhouse-connect client for ``target`` (raises on connection failure).

    ``database``: the session database (``None``: the server default; the tables are always
    addressed fully qualified by the writer). ``client_settings``: session settings.
    ``direct``: never through a proxy named in the environment (the local store's loopback port).
    """
    import clickhouse_connect

    s = settings or ClickHouseSettings()
    if target.kind == "chdb":
        require_embedded()
        Path(target.path).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=f"chdb://{target.path}", database=database,
                                             settings=client_settings or {})
    return clickhouse_connect.get_client(
        host=target.host, port=target.port, username=target.username, password=target.password,
        secure=target.secure, database=database, compress="lz4" if s.compression else False,
        connect_timeout=s.connect_timeout_s, send_receive_timeout=s.send_receive_timeout_s,
        query_retries=0, settings=client_settings or {}, autogenerate_session_id=False,
        **({"pool_mgr": _direct_pool()} if direct else {}))


@functools.cache
def _direct_pool():
    """One connection pool without proxies for every client of the local store (shared: a
    client that is handed a pool does not close it)."""
    from clickhouse_connect.driver.httputil import get_pool_manager

    return get_pool_manager(maxsize=16, num_pools=2)


def _compress_lz4(data: bytes) -> bytes:
    import lz4.frame
    return lz4.frame.compress(data)


class ClickHouseStore:
    """The writer's connection: ``ensure()`` connects and migrates (once; again after a
    failure), ``insert(table, columns, payload, token)`` writes one batch part, ``close()``.

    ``settings``: the ``telemetry.clickhouse`` config. ``dsn``: the resolved DSN.
    Every method raises the driver's exception on failure; the sink decides what to do.
    """

    def __init__(self, settings: ClickHouseSettings, dsn: str):
        self.settings = settings
        self.target = parse_dsn(dsn, settings.database)
        self.schema = SchemaOptions(database=self.target.database, cluster=settings.cluster,
                                    ttl_days=settings.ttl_days)
        self._client = None
        self.migrated: list[int] = []
        self._tables_made: set[str] = set()  # vector tables created (or found) by this process
        self._tables_refused: dict[str, str] = {}  # vector tables the store would not create: why

    @property
    def database(self) -> str:
        return self.target.database

    def ensure(self):
        """Connect (and run the migrations) if not connected; returns the client."""
        if self._client is not None:
            return self._client
        client = connect(self.target, self.settings)
        try:
            self.migrated = migrate(client, self.schema)
        except BaseException:
            _close_quietly(client)
            raise
        if self.migrated:
            log.info("telemetry: ClickHouse schema migrated to version %d at %s (database %s)",
                     self.migrated[-1], self.target.display, self.target.database)
        self._client = client
        return client

    def reset(self) -> None:
        """Drop the connection (after a failure); the next ``ensure()`` reconnects."""
        client, self._client = self._client, None
        if client is not None:
            _close_quietly(client)

    def insert(self, table: str, columns: tuple[str, ...] | list[str], payload: bytes, token: str) -> None:
        """Insert ``payload`` (``JSONCompactEachRow`` bytes) into ``table`` of the database,
        deduplicated by ``token``. Raises on failure (the connection is then reset)."""
        client = self.ensure()
        if table not in self._tables_made and vectors.parse_table(table) is not None:
            self._make_vector_table(client, table)
        settings: dict[str, Any] = {"insert_deduplicate": 1, "insert_deduplication_token": token}
        if self.settings.cluster:
            settings["distributed_foreground_insert"] = 1
        if self.settings.async_insert:
            settings.update(async_insert=1, wait_for_async_insert=1, async_insert_deduplicate=1)
        settings.update(self.settings.insert_settings)
        compression = None
        if self.target.kind == "http" and self.settings.compression:
            payload = _compress_lz4(payload)
            compression = "lz4"
        try:
            client.raw_insert(f"`{self.database}`.`{table}`", list(columns), payload, settings=settings,
                              fmt=INSERT_FORMAT, compression=compression)
        except BaseException:
            self.reset()
            raise

    def _make_vector_table(self, client, table: str) -> None:
        """Create vector table ``table`` before its first insert (its HNSW index needs the vectors'
        length). A store that refuses the table itself (a server without vector indexes) refuses
        its rows for good: ``VectorTableRefused`` (a ``ValueError``, so the batch's other rows and
        tables still go in) instead of an error that would hold the whole log back."""
        refused = self._tables_refused.get(table)
        if refused is not None:
            raise VectorTableRefused(table, refused)
        try:
            for stmt in vectors.create_statements(table, self.schema):
                client.command(stmt)
        except Exception as exc:
            self.reset()
            if not isinstance(getattr(exc, "code", None), int):
                raise  # the store is down or unreachable: retry the batch later
            reason = f"{type(exc).__name__}: {str(exc)[:300]}"
            self._tables_refused[table] = reason
            log.error("telemetry: the store refused to create %s; its rows are dropped until a restart: %s",
                      table, reason)
            raise VectorTableRefused(table, reason) from exc
        self._tables_made.add(table)

    def close(self) -> None:
        """Close the connection (chDB: releases the engine when no other client holds it)."""
        self.reset()


class VectorTableRefused(ValueError):
    """The store would not create a vector table (``ClickHouseStore.insert``): its rows are refused."""

    def __init__(self, table: str, reason: str):
        super().__init__(f"the store refused to create vector table {table}: {reason}")


def _close_quietly(client) -> None:
    try:
        client.close()
    except Exception:  # pragma: no cover - closing a broken client
        log.debug("closing ClickHouse client failed", exc_info=True)


def migrate(client, opts: SchemaOptions) -> list[int]:
    """Apply pending migrations through ``client``, then bring the tables' TTL to
    ``opts.ttl_days``; returns the versions applied now."""

    def command(sql: str) -> None:
        client.command(sql)

    def versions() -> set[int]:
        rows = client.query(f"SELECT DISTINCT version FROM `{opts.database}`.`schema_migrations`").result_rows
        return {int(r[0]) for r in rows}

    applied = apply_migrations(command, versions, opts)
    for stmt in apply_ttl(command, lambda sql: client.query(sql).result_rows, opts):
        log.info("telemetry: ttl_days is %s: %s", opts.ttl_days, stmt)
    return applied


class ReadOnlyClient:
    """Runs ops queries with ``readonly=1`` and the ``telemetry.queries`` limits on its own
    connection (created on first use).

    ``query(sql, fmt, params, tag) -> bytes`` returns the server-rendered result in ClickHouse
    format ``fmt`` (``PrettyCompactMonoBlock``, ``JSON``, ``CSVWithNames`` …). ``tag``: a
    marker put in a leading comment of the statement, by which ``kill(tag)`` cancels it
    (``KILL QUERY``, which chDB supports too). Thread-safe (calls are serialised). Raises the
    driver's exception on a ClickHouse error. ``limits``: ``QuerySettings`` (defaults when
    ``None``); with ``readonly=1`` a query cannot change them.

    ``locate``: for the embedded store (a ``chdb://`` DSN), where it is served (``() -> URL``,
    e.g. ``gateway.store.discovery.StoreLocator.url``): the client then reads it over HTTP like
    a server and never opens chDB; it asks again after each failure, so a store that restarted
    on another port is found. Without ``locate`` a ``chdb://`` DSN opens the directory in this
    process (the command line's offline reads). ``extra_settings``: more ClickHouse settings for
    this client's every query (a lane's own, e.g. ``vectors.SEARCH_SETTINGS``).
    """

    FORMAT_SETTINGS = {
        "output_format_pretty_color": 0,
        "output_format_pretty_row_numbers": 0,
        "output_format_pretty_fallback_to_vertical": 0,
        "output_format_pretty_max_value_width": 200,
    }

    def __init__(self, settings: ClickHouseSettings, dsn: str, limits: QuerySettings | None = None, *,
                 locate: Callable[[], str] | None = None, extra_settings: dict[str, Any] | None = None):
        self.settings = settings
        self.target = parse_dsn(dsn, settings.database)
        limits = limits or QuerySettings()
        # readonly last: once set, no other setting may change (chDB sets them on the connection).
        self.session_settings = {**limits.clickhouse_settings(), **self.FORMAT_SETTINGS, **(extra_settings or {}),
                                 "readonly": 1}
        # an answer may take as long as the query may run
        self._http_settings = settings.model_copy(update={"send_receive_timeout_s": max(
            settings.send_receive_timeout_s, limits.max_execution_time_s + 5)})
        self._locate = locate if self.target.kind == "chdb" else None
        self._via = self.target  # where the open connection goes (the located store's URL)
        self._client = None
        self._lock = threading.Lock()

    def _ensure(self):
        if self._client is None:
            target, settings = self.target, self._http_settings
            if self._locate is not None:
                target = parse_dsn(self._locate(), self.target.database)
                # loopback: compressing answers would only cost both processes CPU
                settings = settings.model_copy(update={"compression": False})
            if target.kind == "chdb":
                # chDB settings are per connection: set once, readonly last.
                self._client = connect(target, settings, database=target.database,
                                       client_settings=self.session_settings)
            else:
                self._client = connect(target, settings, database=target.database, direct=self._locate is not None)
            self._via = target
        return self._client

    def query(self, sql: str, fmt: str, params: dict[str, Any] | None = None, tag: str | None = None) -> bytes:
        """Run one read-only statement and return its output bytes in format ``fmt``."""
        if tag:
            sql = f"{tag_comment(tag)}\n{sql}"
        with self._lock:
            client = self._ensure()
            settings = None if self._via.kind == "chdb" else self.session_settings
            try:
                return client.raw_query(sql, parameters=params or None, settings=settings, fmt=fmt)
            except Exception:
                if self._via.kind == "http":
                    self._drop()
                raise

    def kill(self, tag: str) -> None:
        """Cancel the running statements carrying ``tag`` (``KILL QUERY … ASYNC``: it returns at
        once; the statement ends at its next cancellation check)."""
        if not _TAG_RE.match(tag):
            raise ValueError(f"bad query tag {tag!r}")
        sql = f"KILL QUERY WHERE startsWith(query, '{tag_comment(tag)}') ASYNC"
        with self._lock:
            client = self._ensure()
            try:
                client.raw_query(sql, fmt="TabSeparated")
            except Exception:
                if self._via.kind == "http":
                    self._drop()
                raise

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _close_quietly(client)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._drop()


_TAG_RE = re.compile(r"^[A-Za-z0-9_:-]{1,80}$")


def tag_comment(tag: str) -> str:
    """The leading comment that marks a statement as ``tag``'s."""
    return f"/* {tag} */"


def chdb_dir_in_use(path: str) -> bool:
    """Whether another process holds the chDB directory ``path`` (its ``status`` lock file)."""
    import fcntl

    status = os.path.join(path, "status")
    if not os.path.exists(status):
        return False
    try:
        fd = os.open(status, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
