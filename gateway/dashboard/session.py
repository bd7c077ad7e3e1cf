"""How a browser carries the admin key: a signed, HttpOnly session cookie.

A browser cannot add ``Authorization: Bearer`` to a page load, so ``/dashboard`` exchanges the
admin key once (the login form's ``POST /dashboard/login``, or ``GET /dashboard?key=…`` which
redirects to a URL without it) for a cookie::

    llm_gateway_dashboard=v1.<expiry>.<HMAC-SHA256(sha256("…dashboard session" ‖ admin_key), expiry)>
    HttpOnly; SameSite=Strict; Path=/; Max-Age=43200 (12 h); Secure over HTTPS

The cookie holds no key, only a MAC keyed by the admin key in force: changing ``server.admin_key``
(a reload) ends every session. It is honoured only

- on ``GET``/``HEAD`` of the read-only paths the page uses (``/admin/dashboard/…``,
  ``/admin/backends``, ``/admin/vllm``, ``/admin/telemetry``), never on a ``POST`` such as
  ``/admin/query``;
- with the header ``X-Dashboard: 1``, which the page's ``fetch`` sends and which a cross-site
  form, link or image cannot (a cross-origin script would need a CORS preflight the gateway
  never grants).

Without an admin key the admin endpoints (and the page) answer loopback clients only, as before;
no cookie is involved.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from aiohttp import web

from gateway.auth import ADMIN_OK

COOKIE = "llm_gateway_dashboard"
SESSION_S = 12 * 3600
HEADER = "X-Dashboard"
COOKIE_PREFIXES = ("/admin/dashboard/",)
COOKIE_PATHS = frozenset({"/admin/backends", "/admin/vllm", "/admin/telemetry"})
_CONTEXT = b"llm-gateway dashboard session\x00"


def _mac(admin_key: str, expiry: int) -> str:
    secret = hashlib.sha256(_CONTEXT + admin_key.encode()).digest()
    return hmac.new(secret, f"v1.{expiry}".encode(), hashlib.sha256).hexdigest()


def make_token(admin_key: str, now: float | None = None, lifetime_s: int = SESSION_S) -> str:
    """A session value for ``admin_key`` valid ``lifetime_s`` seconds from ``now``."""
    expiry = int(time.time() if now is None else now) + lifetime_s
    return f"v1.{expiry}.{_mac(admin_key, expiry)}"


def token_valid(token: str | None, admin_key: str | None, now: float | None = None) -> bool:
    """Whether ``token`` was made with ``admin_key`` and has not expired."""
    if not token or not admin_key:
        return False
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "v1" or not parts[1].isdigit():
        return False
    expiry = int(parts[1])
    if expiry < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(parts[2], _mac(admin_key, expiry))


def key_matches(given: str, admin_key: str | None) -> bool:
    """Constant-time comparison of a presented key with the admin key."""
    if not given or not admin_key:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(admin_key.encode()).digest())


def set_cookie(response: web.StreamResponse, request: web.Request, admin_key: str) -> None:
    response.set_cookie(COOKIE, make_token(admin_key), max_age=SESSION_S, path="/", httponly=True,
                        samesite="Strict", secure=request.secure or None)


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")


def has_session(request: web.Request, admin_key: str | None) -> bool:
    """A valid session cookie on ``request`` for the key in force."""
    return token_valid(request.cookies.get(COOKIE), admin_key)


def cookie_allowed(request: web.Request) -> bool:
    """Whether a session cookie may stand in for the admin key on this request."""
    if request.method not in ("GET", "HEAD") or request.headers.get(HEADER) != "1":
        return False
    if "Authorization" in request.headers:
        return False
    path = request.path
    return path in COOKIE_PATHS or path.startswith(COOKIE_PREFIXES)


def session_middleware(admin_key: Callable[[], str | None]):
    """Middleware (installed ahead of the admin check): a valid session cookie on an allowed
    request marks it admin-checked, so the shared check lets it through."""

    @web.middleware
    async def dashboard_session(request: web.Request, handler):
        if request.path.startswith("/admin/") and cookie_allowed(request) and has_session(request, admin_key()):
            request[ADMIN_OK] = True
        return await handler(request)

    return dashboard_session
