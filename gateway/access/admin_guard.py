"""Who may use the admin API and the dashboard, and how wrong admin keys are slowed down.

With ``server.admin_key`` set, ``/admin/*`` needs ``Authorization: Bearer <admin_key>`` (or the
dashboard's session cookie, ``dashboard/session.py``). Without one a request is admitted only
when it was made on this machine, to this machine:

- the client address is loopback (behind a trusted proxy: the ``X-Forwarded-For`` client);
- its ``Host`` is ``localhost``, ``127.0.0.1`` or ``[::1]`` (any port): a page that reached the
  gateway through DNS rebinding sends its own host name; behind a trusted proxy every
  ``X-Forwarded-Host`` value must be one of those too (a proxy that keeps the browser's ``Host``
  may pass on an ``X-Forwarded-Host`` the page set itself);
- no proxy relayed it: no ``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP`` or ``Via`` header, unless
  the peer is one of ``server.trusted_proxies`` and names the client in ``X-Forwarded-For``
  (then its headers decide, ``proxies.py``; ``Forwarded`` alone is not read);
- and it passes the browser checks (``browser_guard.py``): JSON bodies only, no foreign ``Origin``.

Wrong admin keys (a bearer header, the dashboard's login form) are slowed per client address
(IPv6 per /64): after a failure that address's attempts are checked one at a time, ``FAIL_DELAY_S``
apart, and while its queue is longer than ``MAX_WAIT_S`` it is answered 429 without its key being
looked at. A key that already failed from that address is answered at once: repeating it tells
nothing new, and a client stuck on an old key does not lock its neighbours out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections import OrderedDict

from aiohttp import web

from gateway.access.browser_guard import BrowserGuard
from gateway.access.proxies import TrustedProxies, is_loopback, loopback_host, parse_ip
from gateway.core.errors import error_body

log = logging.getLogger("gateway.auth")
_JSON = "application/json"
FAIL_DELAY_S = 0.5
MAX_WAIT_S = 5.0
_REMEMBERED_KEYS = 32  # wrong keys remembered per address
_MAX_CLIENTS = 10_000
_FORGET_S = 600.0  # an address with no failure for this long starts afresh

NO_KEY_MESSAGE = ("No server.admin_key is configured, so the admin API and the dashboard answer only requests "
                  "made on this machine to http://localhost, 127.0.0.1 or [::1] and not relayed by a proxy. "
                  "To use them from elsewhere set server.admin_key (e.g. admin_key: ${GATEWAY_ADMIN_KEY}) "
                  "and send Authorization: Bearer <admin key>.")
_RELAY_HEADERS = ("forwarded", "x-forwarded-", "x-real-ip", "via")


def _error(status: int, message: str, code: str, type_: str, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=error_body(message, type_, None, code), content_type=_JSON,
                        headers=headers)


def bearer(headers) -> str:
    auth = headers.get("Authorization", "") if headers is not None else ""
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def relayed(headers) -> bool:
    """Whether a proxy (or a client posing as one) added forwarding headers."""
    return any(name.lower().startswith(_RELAY_HEADERS) for name in headers)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class _Client:
    __slots__ = ("next_at", "wrong")

    def __init__(self, now: float):
        self.next_at = now
        self.wrong: OrderedDict[bytes, None] = OrderedDict()


class FailedAttempts:
    """Wrong admin keys per client address, and the wait they impose (one event loop's worth:
    each ``--workers`` process counts its own)."""

    def __init__(self, delay_s: float = FAIL_DELAY_S, max_wait_s: float = MAX_WAIT_S):
        self.delay_s = delay_s
        self.max_wait_s = max_wait_s
        self._clients: dict[str, _Client] = {}

    @staticmethod
    def bucket(address: str) -> str:
        ip = parse_ip(address)
        if ip is None:
            return address
        if ip.version == 6 and ip.ipv4_mapped is None:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)

    def known_wrong(self, client: str, digest: bytes) -> bool:
        entry = self._clients.get(client)
        return entry is not None and digest in entry.wrong

    def reserve(self, client: str) -> float:
        """Seconds ``client`` must wait before its key is checked; more than ``max_wait_s``: answer
        429 (nothing is reserved then). Synchronous, so a burst of concurrent attempts queues up."""
        entry = self._clients.get(client)
        if entry is None:
            return 0.0
        now = time.monotonic()
        if now - entry.next_at > _FORGET_S:
            del self._clients[client]
            return 0.0
        slot = max(now, entry.next_at)
        wait = slot - now
        if wait > self.max_wait_s:
            return wait
        entry.next_at = slot + self.delay_s
        return wait

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def failed(self, client: str, digest: bytes) -> float:
        """Record a wrong key; returns how long to hold the answer (the next attempt's slot)."""
        now = time.monotonic()
        entry = self._clients.get(client)
        if entry is None:
            if len(self._clients) >= _MAX_CLIENTS:
                self._prune(now)
            entry = self._clients[client] = _Client(now)
            entry.next_at = now + self.delay_s
        entry.wrong[digest] = None
        if len(entry.wrong) > _REMEMBERED_KEYS:
            entry.wrong.popitem(last=False)
        return max(0.0, entry.next_at - now)

    def _prune(self, now: float) -> None:
        stale = [c for c, e in self._clients.items() if e.next_at < now]
        for c in stale:
            del self._clients[c]
        if len(self._clients) >= _MAX_CLIENTS:  # under a flood of addresses: keep the newest half
            for c in list(self._clients)[: len(self._clients) // 2]:
                del self._clients[c]


class AdminGuard:
    """The admin check of one application, with the settings in force (``update`` on reloads)."""

    def __init__(self, server=None):
        self.proxies = TrustedProxies()
        self.browser = BrowserGuard()
        self.attempts = FailedAttempts()
        if server is not None:
            self.update(server)

    def update(self, server) -> None:
        """Take ``server.trusted_proxies`` and ``server.cors_origins`` from a ``ServerSettings``."""
        self.proxies.update(server.trusted_proxies)
        self.browser.update(server.cors_origins)

    def client_address(self, request) -> str:
        return self.proxies.client_address(request)

    def local(self, request) -> bool:
        """Made on this machine to a loopback name, and not relayed by an untrusted proxy."""
        if self.proxies.peer_trusted(request):
            if "X-Forwarded-For" not in request.headers and relayed(request.headers):
                return False  # relayed (Forwarded, X-Real-IP, Via, …) but the client is not named
            client = self.proxies.client_address(request)
        elif relayed(request.headers):
            return False
        else:
            client = request.remote
        return is_loopback(client) and all(loopback_host(h) for h in self.proxies.hosts(request))

    def unauthenticated_denied(self, request) -> web.Response | None:
        """The browser checks for a request without a credential of its own (``browser_guard``)."""
        return self.browser.denied(request, self.proxies.host(request))

    def denied(self, request, admin_key: str | None) -> web.Response | None:
        """``None`` when ``request`` may use the admin API, else the 401/403/415 answer."""
        if not admin_key:
            if not self.local(request):
                return _error(403, NO_KEY_MESSAGE, "admin_forbidden", "invalid_request_error")
            return self.unauthenticated_denied(request)
        token = bearer(request.headers)
        if token and hmac.compare_digest(_digest(token), _digest(admin_key)):
            return None
        return self.key_required()

    @staticmethod
    def key_required() -> web.Response:
        return _error(401, "a valid admin key is required (Authorization: Bearer <server.admin_key>)",
                      "invalid_admin_key", "authentication_error")

    async def admit_key(self, request, given: str, admin_key: str) -> bool | web.Response:
        """Check a presented admin key, slowed per client address: ``True``/``False``, or a 429
        answer while that address has too many wrong keys queued."""
        client = self.attempts.bucket(self.client_address(request))
        digest = _digest(given)
        if self.attempts.known_wrong(client, digest):
            return False
        wait = self.attempts.reserve(client)
        if wait > self.attempts.max_wait_s:
            retry = max(1, math.ceil(wait))
            return _error(429, f"Too many wrong admin keys from your address. Please try again in {retry} s.",
                          "too_many_failed_attempts", "requests", {"Retry-After": str(retry)})
        if wait > 0:
            await asyncio.sleep(wait)
        if hmac.compare_digest(digest, _digest(admin_key)):
            self.attempts.succeeded(client)
            return True
        hold = self.attempts.failed(client, digest)
        await asyncio.sleep(hold)
        return False

    async def check(self, request, admin_key: str | None) -> web.Response | None:
        """``denied``, with wrong bearer keys slowed down (the admin middleware's check)."""
        if not admin_key:
            return self.denied(request, None)
        token = bearer(request.headers)
        if not token:
            return self.key_required()
        ok = await self.admit_key(request, token, admin_key)
        if ok is True:
            return None
        return ok if isinstance(ok, web.Response) else self.key_required()


GUARD = web.AppKey("admin_guard", AdminGuard)
_DEFAULT = AdminGuard()


def guard_of(request) -> AdminGuard:
    """The application's guard; a default one (no proxies, no origins) for stand-in requests."""
    app = getattr(request, "app", None)
    guard = app.get(GUARD) if app is not None else None
    return guard if guard is not None else _DEFAULT


def warn_if_admin_open(admin_key: str | None, host: str) -> bool:
    """Log one warning line when ``serve`` binds a non-loopback address without an admin key.
    Returns whether it warned."""
    if admin_key or host == "localhost" or is_loopback(host):
        return False
    log.warning("no server.admin_key while listening on %s: the admin API and the dashboard answer only requests "
                "made on this machine to localhost; set server.admin_key (e.g. ${GATEWAY_ADMIN_KEY}) to use them "
                "from elsewhere", host)
    return True


__all__ = ["AdminGuard", "FailedAttempts", "GUARD", "NO_KEY_MESSAGE", "bearer", "guard_of", "relayed",
           "warn_if_admin_open"]
