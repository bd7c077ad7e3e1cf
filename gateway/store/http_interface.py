"""chDB served over ClickHouse's HTTP interface, so readers use clickhouse-connect's HTTP client.

The process that owns the embedded store (the ingester, or ``llm-gateway store``) serves it
here on a loopback port; the serving process, the dashboard and the command line then read
the embedded store exactly as they read a ClickHouse server, and never load chDB themselves.
What the interface understands is described in ``gateway.store.wire``; answers carry
``X-ClickHouse-Summary``, ``-Format``, ``-Timezone``, ``-Query-Id`` and ``-Server-Display-Name``,
errors are written as ClickHouse writes them (``Code: N. DB::Exception: …`` with
``X-ClickHouse-Exception-Code``).

The event loop only reads requests and writes answers: decompression, the statement and the
answer's compression run on the engine's threads (``gateway.store.engine``), so a heavy query
never holds up ``/ping`` or another reader beyond what chDB itself serialises.

``readonly=True`` runs every request with ``readonly=1``: no writes, no DDL, no table functions
(``file()``, ``url()``: the port must not open the host's files to whoever reaches it). A
request's own settings are applied before ``readonly``, so a reader may still set its limits.
It is the mode for a store whose owner writes in-process, as the ingester does.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.proxy.server import BackgroundServer
from gateway.store.engine import DEFAULT_THREADS, ChdbEngine, Result
from gateway.store.wire import Statement, StoreError, credentials, decode_body, encode_body, read_statement

VERSION = "26.9.2.1"  # what clickhouse-connect is told (the chDB engine's release line)
MAX_BODY_BYTES = 256 * 1024 * 1024
Answer = tuple[int, dict[str, str], bytes]


class ClickHouseHTTPInterface:
    """``with ClickHouseHTTPInterface(chdb_dir) as ch: ch.url`` → ``http://127.0.0.1:PORT``.

    ``host``/``port``: where to listen (``port=0``: a free one, kept across ``stop()`` and
    ``start()``). ``user``/``password``: the one account (``password=""``: every request is
    accepted, as ``default``). ``readonly``: refuse writes, DDL and table functions to every request.
    ``threads``: statements run at once. ``tmp_dir``: where INSERT data is staged.

    Subclasses may override ``before_execute`` / ``after_execute`` (on the engine's thread;
    raising ``StoreError`` answers that error) and ``observe`` (every parsed request).
    """

    def __init__(self, chdb_dir: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 0,
                 user: str = "default", password: str = "", readonly: bool = False, threads: int = DEFAULT_THREADS,
                 tmp_dir: str | None = None, display_name: str = "llm-gateway-store"):
        self.engine = ChdbEngine(chdb_dir, threads=threads, tmp_dir=tmp_dir)
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.readonly_floor = 1 if readonly else 0
        self.display_name = display_name
        self.requests = 0
        self._server: BackgroundServer | None = None

    @property
    def chdb_dir(self) -> str:
        return self.engine.path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def inserts(self) -> int:
        """INSERT statements the engine committed."""
        return self.engine.inserts

    def dsn(self, database: str = "default", user: str | None = None, password: str | None = None) -> str:
        """An ``http://user:password@HOST:PORT/database`` DSN for this server."""
        u = self.user if user is None else user
        p = self.password if password is None else password
        cred = f"{u}:{p}@" if p else f"{u}@"
        return f"http://{cred}{self.host}:{self.port}/{database}"

    # --- lifecycle -----------------------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application (for a caller that runs it on a loop of its own)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/ping", self._ping)
        app.router.add_route("*", "/", self._query)
        return app

    def start(self) -> ClickHouseHTTPInterface:
        """Open the engine and listen (on a thread with its own event loop)."""
        if self._server is not None:
            return self
        self.engine.open()
        try:
            server = BackgroundServer(self.app(), host=self.host, port=self.port)
            server.__enter__()
        except BaseException:
            self.engine.close()
            raise
        self._server = server
        self.port = server.port
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused from now on), then release the engine."""
        server, self._server = self._server, None
        if server is not None:
            server.__exit__(None, None, None)
        self.engine.close()

    def __enter__(self) -> ClickHouseHTTPInterface:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- hooks -----------------------------------------------------------------------------
    def before_execute(self, stmt: Statement) -> None:
        """Called on the engine's thread before ``stmt`` runs."""

    def after_execute(self, stmt: Statement, result: Result) -> None:
        """Called on the engine's thread after ``stmt`` ran (an INSERT is committed by then)."""

    def observe(self, entry: dict[str, Any]) -> None:
        """Called with each parsed request: ``user``, ``content_encoding``, ``settings``, ``sql``
        (the statement's first line, never an INSERT's data)."""

    # --- handlers --------------------------------------------------------------------------
    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def _query(self, request: web.Request) -> web.Response:
        params: Mapping[str, str] = request.query
        if request.content_type == "multipart/form-data":
            # clickhouse-connect sends the statement and its parameters as form fields once the
            # parameters outgrow a URL (4 KiB: any embedding of a few hundred numbers), as
            # ClickHouse accepts them
            try:
                params, body = await _form_fields(request), b""
            except StoreError as exc:
                status, more, data = _error(exc)
                return web.Response(status=status, body=data, headers=more)
        else:
            body = await request.read()
        if request.method in ("GET", "HEAD") and not body and "query" not in params:
            return web.Response(text="Ok.\n")  # as ClickHouse answers a bare GET /
        self.requests += 1
        qid = request.query.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": qid, "X-ClickHouse-Server-Display-Name": self.display_name,
                   "X-ClickHouse-Timezone": "UTC"}
        try:
            executor = self.engine.executor
            status, more, data = await asyncio.get_running_loop().run_in_executor(
                executor, self._answer, params, request.headers, request.method, body)
        except StoreError as exc:
            status, more, data = _error(exc)
        except RuntimeError:  # the executor shut down under us: the server is stopping
            status, more, data = _error(StoreError("Code: 210. DB::Exception: The store is shutting down. "
                                                   "(NETWORK_ERROR)", 503))
        return web.Response(status=status, body=data, headers={**headers, **more})

    def _answer(self, params: Mapping[str, str], headers: Mapping[str, str], method: str, body: bytes) -> Answer:
        """The whole request after its body arrived, on an engine thread."""
        try:
            user, password = credentials(params, headers)
            self._authenticate(user, password)
            encoding = headers.get("Content-Encoding", "")
            stmt = read_statement(params, headers, decode_body(body, encoding), method=method,
                                  readonly_floor=self.readonly_floor)
            self.observe({"content_encoding": encoding, "user": user, "settings": dict(stmt.settings),
                          "sql": stmt.head})
            self.before_execute(stmt)
            result = self.engine.execute(stmt)
            self.after_execute(stmt, result)
        except StoreError as exc:
            return _error(exc)
        out = {"X-ClickHouse-Summary": orjson.dumps({k: str(v) for k, v in result.summary.items()}).decode()}
        if result.format:
            out["X-ClickHouse-Format"] = result.format
        data = result.data
        if params.get("enable_http_compression") == "1" and data:
            data, encoded = encode_body(data, headers.get("Accept-Encoding", ""))
            if encoded:
                out["Content-Encoding"] = encoded
        return 200, out, data

    def _authenticate(self, user: str, password: str) -> None:
        if not self.password:
            return
        ok = hmac.compare_digest(user.encode(), self.user.encode())
        ok = hmac.compare_digest(password.encode(), self.password.encode()) and ok
        if not ok:
            raise StoreError(f"Code: 516. DB::Exception: {user}: Authentication failed: password is incorrect, "
                             "or there is no user with such name. (AUTHENTICATION_FAILED)")


async def _form_fields(request: web.Request) -> dict[str, str]:
    """The URL's parameters with a multipart form's fields over them (``query``, ``param_<name>``).
    A file part is external data, which this interface does not take."""
    fields: dict[str, str] = dict(request.query)
    form = await request.post()
    for name, value in form.items():
        if not isinstance(value, str):
            raise StoreError(f"Code: 1. DB::Exception: External data ('{name}') is not supported by this store. "
                             "(UNSUPPORTED_METHOD)", 400)
        fields[name] = value
    return fields


def _error(exc: StoreError) -> Answer:
    message = str(exc)
    if "(version" not in message:
        message = f"{message} (version {VERSION})"
    return exc.status, {"X-ClickHouse-Exception-Code": str(exc.code)}, (message + "\n").encode()
