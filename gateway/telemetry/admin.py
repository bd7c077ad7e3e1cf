"""Admin endpoints for telemetry: counters, flush, and read-only ops queries.

- ``GET /admin/telemetry``: the request log's counters (records written and lost, log bytes,
  full, accepting, error, ingest lag; the ingester's counters when it runs in this process).
- ``POST /admin/telemetry/flush``: wait until the ingester has put everything this process
  logged so far into the store (up to ``timeout`` s, query parameter, default 10); answers
  ``flushed`` and the counters.
- ``GET /admin/queries``: saved queries (name, description, parameter defaults).
- ``POST /admin/query``: ``{"sql": "..."}`` or ``{"saved": "latency-by-model"}``, optional
  ``"params": {...}`` and ``"format"`` (``table``, ``json``, ``jsonl``, ``csv``, ``tsv``);
  answers the result as ClickHouse renders it. Read-only: one ``SELECT``/``WITH``/``SHOW``/
  ``DESCRIBE``/``EXPLAIN``/``EXISTS`` statement, run with ``readonly=1`` and the limits of
  ``telemetry.queries`` in the ``adhoc`` lane (503 ``busy`` when it stays full; a query whose
  client disconnects is killed).

Access: ``Authorization: Bearer <server.admin_key>``. With no admin key configured the
endpoints answer local requests only (``gateway.access.admin_guard``: loopback client, loopback
``Host``, no forwarding headers, JSON bodies). The check is the one every ``/admin`` path gets
(``gateway.access.feature``'s middleware, before any handler), so these handlers do not repeat it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from gateway.core.errors import error_body
from gateway.telemetry.lanes import ADHOC, QueryBusy, QueryLanes
from gateway.telemetry.queries import QueryRejected, clickhouse_format, resolve, saved_queries

if TYPE_CHECKING:
    from gateway.telemetry.request_log import RequestLog

log = logging.getLogger("gateway.admin")
_JSON = "application/json"


def _error(status: int, message: str, code: str, type_: str = "invalid_request_error") -> web.Response:
    return web.Response(status=status, body=error_body(message, type_, None, code), content_type=_JSON)


class AdminAPI:
    """The admin handlers.

    ``sink``: returns the ``RequestLog`` or ``None`` when telemetry is off. ``query_client``:
    returns the ``QueryLanes`` (or ``None``). ``queries_dir``: extra saved-query folder.
    """

    def __init__(self, sink: Callable[[], RequestLog | None], query_client: Callable[[], QueryLanes | None],
                 queries_dir: str | None = None):
        self._sink = sink
        self._query_client = query_client
        self._queries_dir = queries_dir

    def routes(self, routes) -> None:
        """Register the routes (``gateway.core.feature.Routes``)."""
        routes.admin_get("/admin/telemetry", self.telemetry)
        routes.admin_post("/admin/telemetry/flush", self.flush)
        routes.admin_get("/admin/queries", self.list_queries)
        routes.admin_post("/admin/query", self.query)

    async def telemetry(self, request: web.Request) -> web.Response:
        sink = self._sink()
        if sink is None:
            return web.json_response({"enabled": False})
        lanes = self._query_client()
        queries = {"queries": lanes.stats()} if lanes is not None else {}
        return web.json_response({"enabled": True, **sink.stats(), **queries})

    async def flush(self, request: web.Request) -> web.Response:
        sink = self._sink()
        if sink is None:
            return web.json_response({"enabled": False})
        try:
            timeout = min(float(request.query.get("timeout", "10")), 120.0)
        except ValueError:
            return _error(400, "timeout must be a number of seconds", "bad_timeout")
        done = await asyncio.to_thread(sink.flush, timeout)
        return web.json_response({"enabled": True, "flushed": done, **sink.stats()})

    async def list_queries(self, request: web.Request) -> web.Response:
        out = [{"name": q.name, "description": q.description, "params": q.defaults}
               for q in saved_queries(self._queries_dir).values()]
        return web.json_response({"queries": out})

    async def query(self, request: web.Request) -> web.Response:
        try:
            spec = orjson.loads(await request.read())
        except (orjson.JSONDecodeError, web.RequestPayloadError):
            return _error(400, "body must be JSON: {\"sql\": ...} or {\"saved\": ...}", "bad_query")
        if not isinstance(spec, dict):
            return _error(400, "body must be a JSON object", "bad_query")
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            return _error(400, "params must be an object", "bad_query")
        try:
            fmt, content_type = clickhouse_format(str(spec.get("format") or "table"))
            sql, params = resolve(spec.get("sql"), spec.get("saved"), params, self._queries_dir)
        except QueryRejected as exc:
            return _error(400, str(exc), "query_rejected")
        client = self._query_client()
        if client is None:
            return _error(503, "no telemetry store is configured", "no_store", "server_error")
        try:
            data = await client.query(ADHOC, sql, fmt, params)
        except QueryBusy as exc:
            return _error(503, str(exc), "busy", "server_error")
        except ConnectionError as exc:  # the embedded store is not served (yet): its ingester is starting
            return _error(503, str(exc), "store_unavailable", "server_error")
        except Exception as exc:  # ClickHouse errors: the client gets ClickHouse's message
            if _unreachable(exc):
                log.info("admin query: the store cannot be reached (%s)", type(exc).__name__)
                return _error(503, "the telemetry store cannot be reached now (its ingester may be restarting); "
                              "try again", "store_unavailable", "server_error")
            from gateway.telemetry.scrub import scrub_secrets
            message = scrub_secrets(str(exc))[:2000]
            log.info("admin query failed: %s", message.splitlines()[0] if message else type(exc).__name__)
            return _error(400, message or type(exc).__name__, "query_failed")
        return web.Response(body=data, headers={"Content-Type": content_type})


def _unreachable(exc: BaseException) -> bool:
    """A connection failure (refused, reset, timed out), not an error in the query."""
    from clickhouse_connect.driver.exceptions import OperationalError

    return isinstance(exc, OperationalError)
