"""HTTP side of the dashboard: the page, its login/logout, and the JSON endpoints.

- ``GET /dashboard``: the page (one self-contained HTML document: styles, the vendored uPlot
  charting library and the page's script inlined; nothing is fetched from elsewhere). Without
  admin access it answers a login form (401). The admin key is never taken from the URL:
  ``?key=…`` answers 400 and the form.
- ``POST /dashboard/login`` (form field ``key``; wrong keys slowed per client address like
  bearer keys, ``admin_guard``), ``POST /dashboard/logout`` (ends the session server-side).
- ``GET /admin/dashboard/{options,summary,timeseries,usage,cache,backends,prompts,adapters}``,
  ``GET /admin/dashboard/requests?kind=slowest|failed&limit=N``,
  ``GET /admin/dashboard/request/{id}[?ts=ms]``, ``GET /admin/dashboard/drift``,
  ``GET /admin/dashboard/bias`` (``gateway.bias.panel``),
  ``GET /admin/dashboard/evaluations`` (``gateway.evals.panel``): JSON; range
  and filters from the query string (``filters.py``), figures from ``panels.py`` /
  ``drift.py``. Errors are OpenAI-shaped: 400 ``bad_filter``, 404 ``not_found``, 503
  ``no_store`` / ``query_failed`` / ``busy``.

The queries run in the telemetry's ``dashboard`` query lane (``gateway.telemetry.lanes``): its
own threads and connections, with the limits of ``telemetry.queries``, so panels never wait
behind an ad-hoc ``/admin/query``; when the lane stays full for its ``queue_wait_s`` a panel
gets 503 ``busy``, and a panel whose page went away has its query killed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import logging
from collections.abc import Callable
from functools import partial
from importlib.resources import files
from typing import Any

import orjson
from aiohttp import web

from gateway.access.admin_guard import bearer, guard_of
from gateway.bias.panel import bias_panel
from gateway.core.errors import error_body
from gateway.dashboard import drift, panels
from gateway.dashboard.filters import FilterError, parse_filters
from gateway.dashboard.session import Sessions
from gateway.dashboard.sql import client_fetch
from gateway.evals.panel import evaluations_panel
from gateway.telemetry.lanes import DASHBOARD, QueryBusy, QueryLanes

log = logging.getLogger("gateway.dashboard")
STATIC = files("gateway.dashboard") / "static"  # package data
_JSON = "application/json"
_NO_STORE = {"Cache-Control": "no-store"}
# Panels kept in scripts of their own (each adds its section and pushes its loader onto
# window.gatewayPanels, which dashboard.js calls on every refresh).
PANEL_SCRIPTS = ("bias.js",)


def _error(status: int, message: str, code: str, type_: str = "invalid_request_error") -> web.Response:
    return web.Response(status=status, body=error_body(message, type_, None, code), content_type=_JSON,
                        headers=_NO_STORE)


def build_page() -> tuple[str, str]:
    """``(html, content-security-policy)``: the page with its styles and scripts inlined, and a
    CSP that allows exactly those scripts (by hash) and requests to this origin only."""
    template = (STATIC / "dashboard.html").read_text(encoding="utf-8")
    styles = "\n".join((STATIC / name).read_text(encoding="utf-8") for name in ("uPlot.min.css", "dashboard.css"))
    scripts = [(STATIC / name).read_text(encoding="utf-8")
               for name in ("uPlot.iife.min.js", *PANEL_SCRIPTS, "dashboard.js", "evaluations.js")]
    hashes = " ".join("'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
                      for s in scripts)
    page = template.replace("/*STYLES*/", styles).replace(
        "<!--SCRIPTS-->", "".join(f"<script>{s}</script>" for s in scripts))
    csp = (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; connect-src 'self'; "
           "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    return page, csp


_LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>llm-gateway · dashboard</title>
<style>body{{font:15px system-ui,sans-serif;background:#0f1419;color:#e6e6e6;display:grid;place-items:center;
height:100vh;margin:0}}form{{background:#182028;padding:28px 32px;border-radius:8px;min-width:300px}}
h1{{font-size:18px;margin:0 0 16px}}input{{width:100%;box-sizing:border-box;padding:8px;margin:6px 0 14px;
background:#0f1419;color:#e6e6e6;border:1px solid #34414d;border-radius:4px}}button{{padding:8px 16px;
background:#3b82f6;color:#fff;border:0;border-radius:4px;cursor:pointer}}.err{{color:#f87171;margin:0 0 10px}}
p.hint{{color:#8b98a5;font-size:13px;max-width:320px}}</style></head><body>
<form method="post" action="/dashboard/login"><h1>llm-gateway dashboard</h1>{message}
<label for="key">Admin key (<code>server.admin_key</code>)</label>
<input id="key" name="key" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Sign in</button>
<p class="hint">The key is exchanged for an HttpOnly session cookie (12 h); it is not stored in the page.</p>
</form></body></html>"""

_FORBIDDEN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>llm-gateway · dashboard</title>
</head><body style="font:15px system-ui,sans-serif;padding:40px"><h1>Dashboard unavailable</h1>
<p>No <code>server.admin_key</code> is configured, so the admin pages answer only requests made on this
machine to <code>http://localhost</code>, <code>127.0.0.1</code> or <code>[::1]</code>, not relayed by a proxy.
Set <code>server.admin_key</code> to open the dashboard from elsewhere.</p></body></html>"""


def current_labels(runtime) -> dict[tuple[str, int], list[str]] | None:
    """The labels each prompt version has in the config in force: ``{(prompt, version):
    ["production", "canary 10%", "latest"]}`` (an experiment label with its share of that
    version; ``latest`` on the newest version). ``None`` without a runtime."""
    registry = getattr(runtime, "compiled", {}).get("prompts")  # PromptsFeature.compile
    if registry is None:
        return None
    out: dict[tuple[str, int], list[str]] = {}
    for prompt in registry.prompts.values():
        for label in sorted(prompt.labels.values(), key=lambda x: x.name):
            if label.version is not None:
                out.setdefault((prompt.name, label.version), []).append(label.name)
                continue
            total = sum(w for _, w in label.arms) or 1
            for version, weight in label.arms:
                out.setdefault((prompt.name, version), []).append(f"{label.name} {weight / total * 100:g}%")
        if prompt.versions:
            out.setdefault((prompt.name, prompt.latest), []).append("latest")
    return out


class DashboardAPI:
    """The dashboard's handlers. ``query_client()``: the telemetry ``QueryLanes`` (or
    ``None``); ``admin_key()``: the admin key in force (``None``: local requests only);
    ``sessions``: the session cookies (``session.Sessions``); ``runtime()``: the ``Runtime`` in
    force (its models and prompt labels), or ``None``."""

    def __init__(self, query_client: Callable[[], QueryLanes | None], admin_key: Callable[[], str | None],
                 sessions: Sessions, runtime: Callable[[], Any] = lambda: None):
        self._client = query_client
        self._admin_key = admin_key
        self._sessions = sessions
        self._runtime = runtime
        self._page: tuple[str, str] | None = None

    # --- set-up ---------------------------------------------------------------------------
    def routes(self, routes) -> None:
        """Register the routes (``gateway.core.feature.Routes``)."""
        routes.get("/dashboard", self.page)
        routes.post("/dashboard/login", self.login)
        routes.post("/dashboard/logout", self.logout)
        for name, fn in (("options", panels.options), ("summary", panels.summary),
                         ("timeseries", panels.timeseries), ("usage", panels.usage), ("cache", panels.cache),
                         ("backends", panels.backends), ("adapters", panels.adapters)):
            routes.admin_get(f"/admin/dashboard/{name}", partial(self._panel, fn))
        routes.admin_get("/admin/dashboard/prompts", self.prompts)
        routes.admin_get("/admin/dashboard/requests", self.requests)
        routes.admin_get("/admin/dashboard/request/{id}", self.request_detail)
        routes.admin_get("/admin/dashboard/drift", self.drift)
        routes.admin_get("/admin/dashboard/bias", partial(self._from_query, bias_panel))
        routes.admin_get("/admin/dashboard/evaluations", partial(self._from_query, evaluations_panel))

    # --- the page --------------------------------------------------------------------------
    async def _access(self, request: web.Request) -> str | web.Response | None:
        """How ``request`` may see the page: ``"open"`` (a local request without an admin key),
        ``"cookie"`` (a valid session), ``"header"`` (the admin key sent), ``None``; or a 429
        answer while its address has too many wrong keys."""
        key = self._admin_key()
        guard = guard_of(request)
        if not key:
            return "open" if guard.denied(request, None) is None else None
        if self._sessions.valid(request):
            return "cookie"
        token = bearer(request.headers)
        if token:
            ok = await guard.admit_key(request, token, key)
            if ok is True:
                return "header"
            if isinstance(ok, web.Response):
                return ok
        return None

    def _login_page(self, message: str = "", status: int = 401) -> web.Response:
        body = _LOGIN.format(message=f'<p class="err">{html.escape(message)}</p>' if message else "")
        return web.Response(status=status, text=body, content_type="text/html", charset="utf-8",
                            headers={**_NO_STORE, "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"})

    def _denied_page(self, request: web.Request) -> web.Response:
        if not self._admin_key():
            return web.Response(status=403, text=_FORBIDDEN, content_type="text/html", charset="utf-8",
                                headers=_NO_STORE)
        return self._login_page()

    def _redirect(self) -> web.Response:
        return web.Response(status=303, headers={"Location": "/dashboard", **_NO_STORE,
                                                 "Referrer-Policy": "no-referrer"})

    async def page(self, request: web.Request) -> web.Response:
        if "key" in request.query:  # never from a URL: history, logs and Referer keep it
            return self._login_page("The admin key is not accepted in the address (browser history and logs would "
                                    "keep it): sign in with this form.", status=400)
        mode = await self._access(request)
        if isinstance(mode, web.Response):
            return mode
        if mode is None:
            return self._denied_page(request)
        if self._page is None:
            self._page = await asyncio.to_thread(build_page)
        page, csp = self._page
        return web.Response(text=page.replace("{{AUTH}}", mode), content_type="text/html", charset="utf-8",
                            headers={**_NO_STORE, "Content-Security-Policy": csp, "Referrer-Policy": "no-referrer",
                                     "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"})

    async def login(self, request: web.Request) -> web.Response:
        key = self._admin_key()
        if not key:
            return self._redirect()  # local-only mode: nothing to log into
        try:
            form = await request.post()
        except Exception:  # anyone may post here: a malformed form (encoding, charset, multipart) is a 400
            return self._login_page("The form could not be read.", status=400)
        given = form.get("key")
        given = given.strip() if isinstance(given, str) else ""
        if not given:
            return self._login_page("Enter the admin key.")
        ok = await guard_of(request).admit_key(request, given, key)
        if ok is True:
            response = self._redirect()
            self._sessions.issue(response, request, key)
            return response
        if isinstance(ok, web.Response):
            page = self._login_page("Too many wrong keys from your address: try again in a few seconds.", status=429)
            page.headers["Retry-After"] = ok.headers["Retry-After"]
            return page
        return self._login_page("That key is not the admin key.")

    async def logout(self, request: web.Request) -> web.Response:
        response = self._redirect()
        self._sessions.end(request, response)
        return response

    # --- JSON --------------------------------------------------------------------------------
    async def _run(self, request: web.Request, fn, *args) -> web.Response:
        lanes = self._client()
        if lanes is None:
            return _error(503, "no telemetry store is configured", "no_store", "server_error")
        try:
            filters = parse_filters(request.query)
        except FilterError as exc:
            return _error(400, str(exc), "bad_filter")
        try:
            data = await lanes.lane(DASHBOARD).run(lambda client: fn(client_fetch(client), filters, *args))
        except QueryBusy as exc:
            return _error(503, str(exc), "busy", "server_error")
        except (FilterError, ValueError) as exc:
            return _error(400, str(exc), "bad_filter")
        except drift.UnknownModelError as exc:
            return _error(404, str(exc), exc.code)
        except Exception as exc:  # ClickHouse errors (store down, tables not created yet, …)
            from gateway.telemetry.scrub import scrub_secrets
            message = scrub_secrets(str(exc))[:1000] or type(exc).__name__
            log.info("dashboard query failed: %s", message.splitlines()[0])
            return _error(503, message, "query_failed", "server_error")
        if data is None:
            return _error(404, "no such request", "not_found")
        return web.Response(body=orjson.dumps(data), content_type=_JSON, headers=_NO_STORE)

    async def _panel(self, fn, request: web.Request) -> web.Response:
        return await self._run(request, fn)

    async def prompts(self, request: web.Request) -> web.Response:
        labels = current_labels(self._runtime())
        return await self._run(request, lambda fetch, filters: panels.prompts(fetch, filters, labels))

    async def requests(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind", "slowest")
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return _error(400, "limit must be an integer", "bad_filter")
        return await self._run(request, panels.request_list, kind, limit)

    async def request_detail(self, request: web.Request) -> web.Response:
        rid = request.match_info["id"]
        ts = request.query.get("ts")
        try:
            ts_ms = int(ts) if ts else None
        except ValueError:
            return _error(400, "ts must be epoch milliseconds", "bad_filter")
        if len(rid) > 200:
            return _error(400, "request id too long", "bad_filter")
        return await self._run(request, lambda fetch, _filters: panels.request_detail(fetch, rid, ts_ms))

    async def _from_query(self, make: Callable, request: web.Request) -> web.Response:
        """A panel kept in a package of its own: ``make(query, config)`` gives its figures
        function from the request's query and the config in force (``None`` without a runtime;
        ``FilterError``: 400)."""
        try:
            rt = self._runtime()
            fn = make(request.query, rt.snapshot.config if rt is not None else None)
        except FilterError as exc:
            return _error(400, str(exc), "bad_filter")
        return await self._run(request, fn)

    async def drift(self, request: web.Request) -> web.Response:
        try:
            opts = drift.DriftOptions.from_query(request.query)
            at = request.query.get("at")
            now = int(at) / 1000 if at else None
        except (FilterError, ValueError) as exc:
            return _error(400, str(exc), "bad_filter")
        rt = self._runtime()
        models = set(rt.snapshot.config.models) if rt is not None else None
        return await self._run(request, lambda fetch, filters: drift.run_drift(fetch, filters, opts, now, models))
