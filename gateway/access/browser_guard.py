"""Requests a web page could forge, and CORS.

A request made with ``auth.mode: none``, or to the admin API without ``server.admin_key``,
carries nothing secret, so any web page its user opens could send it: a cross-site form, or
``fetch(url, {mode: "no-cors"})``, posts ``text/plain``, form and multipart bodies without asking
the server first (no CORS preflight). Such requests are therefore accepted only

- with ``Content-Type: application/json`` when they have a body or a content type: a page on
  another origin cannot send that without a preflight, which the gateway answers only for
  ``server.cors_origins`` (415 otherwise, saying which header to send);
- without an ``Origin`` header, or with one listed in ``server.cors_origins``: browsers send
  ``Origin`` on every cross-site post, uploads included (403 otherwise). The gateway's own page
  (the dashboard, served from a loopback host name) counts as listed.

No endpoint is exempt: multipart uploads (``/v1/audio/transcriptions``, ``/v1/files``) are
taken only from callers that carry a key.

CORS: with ``cors_origins`` configured, preflights from those origins are answered and responses
to them carry ``Access-Control-Allow-Origin``; otherwise no CORS header is ever sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from gateway.access.proxies import loopback_host
from gateway.core.errors import error_body

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_JSON = "application/json"
_PREFLIGHT_MAX_AGE = "600"


def _error(status: int, message: str, code: str) -> web.Response:
    return web.Response(status=status, body=error_body(message, "invalid_request_error", None, code),
                        content_type=_JSON)


def _normal(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class BrowserGuard:
    """``server.cors_origins`` compiled; ``update`` replaces it on a config reload."""

    __slots__ = ("origins",)

    def __init__(self, origins: Iterable[str] = ()) -> None:
        self.origins: frozenset[str] = frozenset()
        self.update(origins)

    def update(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(_normal(o) for o in origins)

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        origin = _normal(origin)
        if origin in self.origins:
            return True
        # The gateway's own page (the dashboard) on a loopback name. Not any host: a DNS-rebinding
        # page is "same origin" with the gateway under the attacker's host name.
        return host is not None and loopback_host(host) and origin.partition("://")[2] == host.lower()

    def denied(self, request: web.Request, host: str | None) -> web.Response | None:
        """``None`` when a request without a credential of its own may proceed, else the 403/415
        answer. ``host``: the ``Host`` the client asked for."""
        headers = request.headers
        origin = headers.get("Origin")
        if origin is not None and not self.origin_allowed(origin, host):
            return _error(403, f"Requests from web pages on {origin[:200]} are refused: this request carries no "
                               "API key or admin key, so any page could send it. Add the origin to "
                               "server.cors_origins if that page is yours.", "origin_not_allowed")
        if request.method in SAFE_METHODS:
            return None
        content_type = headers.get("Content-Type")
        if content_type is None:
            if not request.body_exists:
                return None  # a bare POST (curl -X POST): browsers send Origin with theirs
        elif content_type.partition(";")[0].strip().lower() == _JSON:
            return None
        return _error(415, "Send the body as JSON with the header Content-Type: application/json. Requests "
                           "without an API key or admin key must declare JSON, which a web page on another site "
                           "cannot send.", "unsupported_media_type")

    # --- CORS (only with cors_origins configured) ------------------------------------------
    def preflight(self, request: web.Request) -> web.Response | None:
        """The answer to a CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``)
        from a listed origin; ``None`` for anything else."""
        headers = request.headers
        origin = headers.get("Origin")
        if origin is None or "Access-Control-Request-Method" not in headers or _normal(origin) not in self.origins:
            return None
        out = {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
               "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
               "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE}
        wanted = headers.get("Access-Control-Request-Headers")
        if wanted:
            out["Access-Control-Allow-Headers"] = wanted  # a listed origin may send what it asks for
        return web.Response(status=204, headers=out)

    def add_cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """A response hook (``gateway.app`` runs it on ``on_response_prepare``):
        ``Access-Control-Allow-Origin`` for a listed origin."""
        if not self.origins:
            return
        origin = request.headers.get("Origin")
        if origin is not None and _normal(origin) in self.origins \
                and "Access-Control-Allow-Origin" not in response.headers:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "*"
            response.headers.add("Vary", "Origin")


__all__ = ["BrowserGuard", "SAFE_METHODS"]
