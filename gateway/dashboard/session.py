"""How a browser carries the admin key: a signed, HttpOnly session cookie.

A browser cannot add ``Authorization: Bearer`` to a page load, so ``/dashboard`` exchanges the
admin key once (the login form's ``POST /dashboard/login``; never a URL, which browser history
and logs would keep) for a cookie::

    llm_gateway_dashboard=v2.<expiry>.<session id>.<HMAC-SHA256(sha256("…dashboard session" ‖ admin_key), …)>
    HttpOnly; SameSite=Strict; Path=/; Max-Age=43200 (12 h); Secure when the browser used HTTPS

"Used HTTPS": TLS to the gateway itself, or ``X-Forwarded-Proto: https`` from one of
``server.trusted_proxies``. The cookie holds no key, only a MAC keyed by the admin key in force:
changing ``server.admin_key`` (a reload) ends every session; "Sign out" ends one, server-side
(``revocations.py``), so a copied cookie stops working too. It is honoured only

- on ``GET``/``HEAD`` of the read-only paths the page uses (``/admin/dashboard/…``,
  ``/admin/backends``, ``/admin/vllm``, ``/admin/telemetry``), never on a ``POST`` such as
  ``/admin/query``;
- with the header ``X-Dashboard: 1``, which the page's ``fetch`` sends and which a cross-site
  form, link or image cannot (a cross-origin script would need a CORS preflight the gateway
  grants only to ``server.cors_origins``).

Without an admin key the admin endpoints (and the page) answer local requests only
(``admin_guard``); no cookie is involved.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from aiohttp import web

from gateway.access.admin_guard import guard_of
from gateway.dashboard.revocations import Revocations

COOKIE = "llm_gateway_dashboard"
SESSION_S = 12 * 3600
HEADER = "X-Dashboard"
COOKIE_PREFIXES = ("/admin/dashboard/",)
COOKIE_PATHS = frozenset({"/admin/backends", "/admin/vllm", "/admin/telemetry"})
_CONTEXT = b"llm-gateway dashboard session\x00"


def _mac(admin_key: str, expiry: int, sid: str) -> str:
    secret = hashlib.sha256(_CONTEXT + admin_key.encode()).digest()
    return hmac.new(secret, f"v2.{expiry}.{sid}".encode(), hashlib.sha256).hexdigest()


def make_token(admin_key: str, now: float | None = None, lifetime_s: int = SESSION_S) -> str:
    """A new session value (a fresh id) for ``admin_key``, valid ``lifetime_s`` seconds from ``now``."""
    expiry = int(time.time() if now is None else now) + lifetime_s
    sid = secrets.token_urlsafe(16)
    return f"v2.{expiry}.{sid}.{_mac(admin_key, expiry, sid)}"


def parse_token(token: str | None, admin_key: str | None, now: float | None = None) -> tuple[str, int] | None:
    """``(session id, expiry)`` when ``token`` was made with ``admin_key`` and has not expired."""
    if not token or not admin_key:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != "v2" or not parts[1].isdigit() or not parts[2]:
        return None
    expiry = int(parts[1])
    if expiry < (time.time() if now is None else now):
        return None
    if not hmac.compare_digest(parts[3], _mac(admin_key, expiry, parts[2])):
        return None
    return parts[2], expiry


def token_valid(token: str | None, admin_key: str | None, now: float | None = None) -> bool:
    """Whether ``token`` was made with ``admin_key`` and has not expired (revocation aside)."""
    return parse_token(token, admin_key, now) is not None


def key_matches(given: str, admin_key: str | None) -> bool:
    """Constant-time comparison of a presented key with the admin key."""
    if not given or not admin_key:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(admin_key.encode()).digest())


def cookie_allowed(request: web.Request) -> bool:
    """Whether a session cookie may stand in for the admin key on this request."""
    if request.method not in ("GET", "HEAD") or request.headers.get(HEADER) != "1":
        return False
    if "Authorization" in request.headers:
        return False
    path = request.path
    return path in COOKIE_PATHS or path.startswith(COOKIE_PREFIXES)


class Sessions:
    """The sessions of one application: issued for the admin key in force, revoked on sign-out."""

    def __init__(self, admin_key: Callable[[], str | None], revocations: Revocations):
        self._admin_key = admin_key
        self._revocations = revocations

    def issue(self, response: web.StreamResponse, request: web.Request, admin_key: str) -> None:
        response.set_cookie(COOKIE, make_token(admin_key), max_age=SESSION_S, path="/", httponly=True,
                            samesite="Strict", secure=guard_of(request).proxies.secure(request) or None)

    def _current(self, request: web.Request) -> tuple[str, int] | None:
        return parse_token(request.cookies.get(COOKIE), self._admin_key())

    def valid(self, request: web.Request) -> bool:
        """A valid, not signed-out session cookie on ``request`` for the key in force."""
        current = self._current(request)
        return current is not None and not self._revocations.revoked(current[0])

    def end(self, request: web.Request, response: web.StreamResponse) -> None:
        """Sign out: revoke the request's session (if any) and clear its cookie."""
        current = self._current(request)
        if current is not None:
            self._revocations.revoke(*current)
        response.del_cookie(COOKIE, path="/")


def session_admits(sessions: Sessions):
    """The admin check's other credential (``AccessLayer.admin_session``): whether a valid
    session cookie on an allowed request stands in for the admin key."""

    def admits(request: web.Request) -> bool:
        return request.path.startswith("/admin/") and cookie_allowed(request) and sessions.valid(request)

    return admits
