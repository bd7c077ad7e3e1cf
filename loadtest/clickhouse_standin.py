"""A ClickHouse HTTP-interface stand-in over chDB, for the tests and the telemetry benchmark.

No modern ClickHouse server installs here (Debian's is 18.16, which clickhouse-connect cannot
talk to), so this serves the parts of the HTTP interface that clickhouse-connect's HTTP client
uses, backed by the real engine (chDB) in this process:

- ``GET/HEAD /ping`` → ``Ok.``
- the query in the ``query`` URL parameter and/or the body (ClickHouse joins them with a
  newline; for ``INSERT … FORMAT X`` the rest of the body is the data: Native, RowBinary,
  JSONEachRow, JSONCompactEachRow, CSV … whatever chDB reads), request bodies with
  ``Content-Encoding`` lz4 / zstd / gzip / deflate
- ``database`` (or ``X-ClickHouse-Database``), ``default_format`` (or ``X-ClickHouse-Format``),
  ``param_<name>`` server-side parameters, and every other URL parameter as a session setting
- credentials by basic auth, ``user``/``password`` parameters or ``X-ClickHouse-User``/``-Key``
- answers with ``X-ClickHouse-Summary``, ``-Format``, ``-Timezone``, ``-Query-Id``,
  ``-Server-Display-Name``; errors as ClickHouse writes them (``Code: N. DB::Exception: …``,
  ``X-ClickHouse-Exception-Code``); response compression when ``enable_http_compression=1``

Fault injection for the outage tests: ``stop()``/``start()`` (connection refused while
stopped, same port after), ``fail_inserts`` (answer 503 before touching the engine) and
``commit_then_fail`` (insert, then answer 500: an ambiguous failure a retry must not
duplicate).

chDB hosts one data directory per process: the stand-in must use the directory every other
chDB client of the test process uses.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import re
import tempfile
import threading
import time
import uuid
import zlib

import chdb
import orjson
from aiohttp import web

from gateway.proxy.server import BackgroundServer

_TRANSPORT = frozenset({
    "query", "database", "default_format", "user", "password", "query_id", "session_id", "session_timeout",
    "session_check", "compress", "decompress", "buffer_size", "wait_end_of_query", "enable_http_compression",
    "http_headers_progress_interval_ms", "send_progress_in_http_headers", "client_protocol_version", "role",
    "quota_key", "cancel_http_readonly_queries_on_client_close", "http_zlib_compression_level",
})
_INSERT_RE = re.compile(
    rb"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+(?P<settings>SETTINGS\s+.+?\s+)?FORMAT\s+(?P<fmt>\w+)[ \t]*(\r?\n)?",
    re.IGNORECASE | re.DOTALL)
_FORMAT_RE = re.compile(rb"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE_RE = re.compile(r"Code: (\d+)")
_NAME_RE = re.compile(r"\(([A-Z_]+)\)\s*(\(version [^)]*\))?\s*$")
_VERSION = "26.9.2.1"


def _decode_body(data: bytes, encoding: str) -> bytes:
    encoding = encoding.lower().strip()
    if not encoding or encoding == "identity":
        return data
    if encoding == "lz4":
        import lz4.frame
        return lz4.frame.decompress(data)
    if encoding == "zstd":
        from clickhouse_connect.driver.compression import _zstd_decompress
        return _zstd_decompress(data)
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def _encode_body(data: bytes, accept: str) -> tuple[bytes, str | None]:
    accepted = [a.split(";")[0].strip() for a in accept.lower().split(",")]
    if "lz4" in accepted:
        import lz4.frame
        return lz4.frame.compress(data), "lz4"
    if "gzip" in accepted:
        return gzip.compress(data), "gzip"
    return data, None


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ClickHouseError(Exception):
    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status


class ClickHouseHTTPStandIn:
    """``with ClickHouseHTTPStandIn(chdb_dir) as ch: ch.url`` → ``http://127.0.0.1:PORT``.

    ``user``/``password``: required credentials (``password=""`` accepts any request as
    ``default``). ``stop()`` / ``start()`` take the port down and up again. Counters:
    ``inserts`` (successful INSERT statements), ``requests`` (all queries).
    """

    def __init__(self, chdb_dir: str, user: str = "default", password: str = "", port: int = 0):
        self.chdb_dir = os.path.realpath(chdb_dir)
        self.user = user
        self.password = password
        self.port = port
        self.fail_inserts = False
        self.commit_then_fail = 0
        self.inserts = 0
        self.requests = 0
        self.log: list[dict] = []
        self._server: BackgroundServer | None = None
        self._anchor = None  # one open handle keeps the engine up between requests (else each re-inits it)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def dsn(self, database: str = "default", user: str | None = None, password: str | None = None) -> str:
        """An ``http://user:password@127.0.0.1:PORT/database`` DSN for this server."""
        u = self.user if user is None else user
        p = self.password if password is None else password
        cred = f"{u}:{p}@" if p else f"{u}@"
        return f"http://{cred}127.0.0.1:{self.port}/{database}"

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> ClickHouseHTTPStandIn:
        os.makedirs(self.chdb_dir, exist_ok=True)
        self._anchor = chdb.connect(self.chdb_dir)
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/ping", self._ping)
        app.router.add_route("*", "/", self._query)
        self._server = BackgroundServer(app, port=self.port)
        self._server.__enter__()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None

    def __enter__(self) -> ClickHouseHTTPStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- handlers ----------------------------------------------------------------------
    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    def _credentials(self, request: web.Request) -> tuple[str, str]:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            return user, password
        if "X-ClickHouse-User" in request.headers:
            return request.headers["X-ClickHouse-User"], request.headers.get("X-ClickHouse-Key", "")
        return request.query.get("user", "default"), request.query.get("password", "")

    async def _query(self, request: web.Request) -> web.Response:
        qid = request.query.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": qid, "X-ClickHouse-Server-Display-Name": "standin",
                   "X-ClickHouse-Timezone": "UTC"}
        try:
            user, password = self._credentials(request)
            if self.password and (user != self.user or password != self.password):
                raise ClickHouseError(f"Code: 516. DB::Exception: {user}: Authentication failed: password is "
                                      "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)", 401)
            params = request.query
            body = _decode_body(await request.read(), request.headers.get("Content-Encoding", ""))
            query = params.get("query", "").encode()
            text = query + b"\n" + body if query and body else query or body
            database = params.get("database") or request.headers.get("X-ClickHouse-Database") or ""
            default_format = params.get("default_format") or request.headers.get("X-ClickHouse-Format") or ""
            settings = {k: v for k, v in params.items() if k not in _TRANSPORT and not k.startswith("param_")}
            qparams = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
            self.log.append({"content_encoding": request.headers.get("Content-Encoding", ""), "user": user,
                             "settings": dict(settings), "sql": text[:4096].split(b"\n", 1)[0]})
            data, fmt, summary = await asyncio.get_running_loop().run_in_executor(
                None, self._execute, text, database, settings, qparams, default_format)
        except ClickHouseError as exc:
            message = str(exc)
            code = _CODE_RE.search(message)
            headers["X-ClickHouse-Exception-Code"] = code.group(1) if code else "1000"
            if "(version" not in message:
                message = f"{message} (version {_VERSION} (standin))"
            return web.Response(status=exc.status, text=message + "\n", headers=headers)
        headers["X-ClickHouse-Summary"] = orjson.dumps({k: str(v) for k, v in summary.items()}).decode()
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
        if params.get("enable_http_compression") == "1":
            data, encoding = _encode_body(data, request.headers.get("Accept-Encoding", ""))
            if encoding:
                headers["Content-Encoding"] = encoding
        return web.Response(body=data, headers=headers)

    # --- the engine ----------------------------------------------------------------------
    def _execute(self, text: bytes, database: str, settings: dict, qparams: dict,
                 default_format: str) -> tuple[bytes, str, dict]:
        with self._lock:
            self.requests += 1
        is_insert = _INSERT_RE.match(text[:65536])
        if is_insert and self.fail_inserts:
            raise ClickHouseError("Code: 242. DB::Exception: Table is in readonly mode (stand-in outage). "
                                  "(TABLE_IS_READ_ONLY)", 503)
        tmp = None
        try:
            if is_insert:
                data = text[is_insert.end():]
                fd, tmp = tempfile.mkstemp(prefix="standin-insert-", suffix=".data")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                clause = is_insert.group("settings") or b""
                sql = (b"INSERT INTO " + is_insert.group("target") + b" FROM INFILE " + _quote(tmp).encode()
                       + b" " + clause + b" FORMAT " + is_insert.group("fmt"))
                fmt = "TabSeparated"
            else:
                sql = text
                m = _FORMAT_RE.search(text)
                fmt = m.group(1).decode() if m else (default_format or "TabSeparated")
            t0 = time.perf_counter()
            conn = chdb.connect(self.chdb_dir)
            try:
                if database:
                    conn.query(f"USE `{database}`", "TabSeparated")
                # readonly last: once set, no other setting may change
                for key in sorted(settings, key=lambda k: k == "readonly"):
                    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                        raise ClickHouseError(
                            f"Code: 115. DB::Exception: Unknown setting '{key}'. (UNKNOWN_SETTING)", 400)
                    conn.query(f"SET {key} = {_quote(settings[key])}", "TabSeparated")
                result = conn.query(sql.decode("utf-8", "surrogateescape"), fmt, params=qparams)
            finally:
                conn.close()
        except ClickHouseError:
            raise
        except Exception as exc:
            message = str(exc)
            idx = message.find("Code: ")
            raise ClickHouseError(message[idx:].strip() if idx >= 0 else f"Code: 1000. DB::Exception: {message}",
                                  404 if "UNKNOWN_TABLE" in message or "UNKNOWN_DATABASE" in message else 500) from None
        finally:
            if tmp:
                os.unlink(tmp)
        summary = {"read_rows": result.rows_read(), "read_bytes": result.bytes_read(), "written_rows": 0,
                   "written_bytes": 0, "total_rows_to_read": 0, "result_rows": 0, "result_bytes": len(result.bytes()),
                   "elapsed_ns": int((time.perf_counter() - t0) * 1e9)}
        if is_insert:
            summary["written_rows"] = result.rows_read()
            with self._lock:
                self.inserts += 1
                if self.commit_then_fail > 0:
                    self.commit_then_fail -= 1
                    raise ClickHouseError("Code: 209. DB::Exception: Timeout exceeded while writing to socket "
                                          "(stand-in: the insert was committed). (SOCKET_TIMEOUT)", 500)
        return result.bytes(), fmt if not is_insert else "", summary


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
