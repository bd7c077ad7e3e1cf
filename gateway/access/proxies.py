"""Who sent a request: the client's address, the ``Host`` it asked for, and whether it used TLS.

Behind a reverse proxy every client looks like the proxy. The proxy's ``X-Forwarded-For``,
``X-Forwarded-Proto`` and ``X-Forwarded-Host`` headers say who the client was, but any client
can send those headers too, so they are believed only when the TCP peer is one of
``server.trusted_proxies``; from anyone else they are ignored (and the admin check refuses a
request relayed by an untrusted proxy, ``admin_guard``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_LOOPBACK_HOST = re.compile(r"(?:localhost|127\.0\.0\.1|\[::1\])(?::\d{1,5})?")


def parse_ip(text: str | None) -> Address | None:
    """An address from a socket peer or a forwarded hop (``1.2.3.4``, ``::1``, ``[::1]:80``,
    ``1.2.3.4:80``, ``fe80::1%eth0``); ``None`` when it is none of those."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def is_loopback(text: str | None) -> bool:
    address = parse_ip(text)
    return address is not None and address.is_loopback


def loopback_host(host: str | None) -> bool:
    """Whether a ``Host`` header names this machine: ``localhost``, ``127.0.0.1`` or ``[::1]``,
    with any port. A page that reached a loopback address through DNS rebinding sends its own name."""
    return host is not None and _LOOPBACK_HOST.fullmatch(host.strip().lower()) is not None


def local_url(host: str, port: int) -> str:
    """The base URL a client on this machine uses for a gateway bound to ``host``: a wildcard
    bind is reached at loopback (``0.0.0.0`` at ``127.0.0.1``, ``::`` at ``[::1]``), which the
    admin check counts as local."""
    address = parse_ip(host)
    if address is not None and address.is_unspecified:  # "::" listens on IPv6 only
        host = "127.0.0.1" if address.version == 4 else "[::1]"
    elif address is not None and address.version == 6:
        host = f"[{address}]"
    return f"http://{host}:{port}"


def _last(headers, name: str) -> str | None:
    """The value the nearest proxy appended: the last of a comma-separated header."""
    values = headers.getall(name, ()) if hasattr(headers, "getall") else [headers.get(name)]
    hops = [h.strip() for v in values if v for h in v.split(",") if h.strip()]
    return hops[-1] if hops else None


class TrustedProxies:
    """``server.trusted_proxies`` compiled; ``update`` replaces it on a config reload."""

    __slots__ = ("networks",)

    def __init__(self, cidrs: Iterable[str] = ()):
        self.networks: tuple = ()
        self.update(cidrs)

    def update(self, cidrs: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in net for net in self.networks)

    def peer_trusted(self, request) -> bool:
        """Whether the TCP peer of ``request`` is a trusted proxy (its forwarded headers count)."""
        return bool(self.networks) and self.trusts(parse_ip(request.remote))

    def client_address(self, request) -> str:
        """The client's address: the peer's, or behind trusted proxies the nearest
        ``X-Forwarded-For`` hop that is not itself a trusted proxy."""
        peer = request.remote or ""
        if not self.peer_trusted(request):
            return peer
        hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", ()) for h in v.split(",")]
        for hop in reversed(hops):
            if not hop:
                continue
            address = parse_ip(hop)
            if address is None:
                return hop  # unreadable: the client is whoever wrote it, never loopback
            if not self.trusts(address):
                return str(address)
            peer = str(address)
        return peer

    def hosts(self, request) -> list[str | None]:
        """Every host name ``request`` carries: its ``Host`` and, from a trusted proxy, each
        ``X-Forwarded-Host`` value (a proxy that keeps the client's ``Host`` passes on an
        ``X-Forwarded-Host`` the client wrote itself)."""
        names: list[str | None] = [request.headers.get("Host")]
        if self.peer_trusted(request):
            names += [h.strip() for v in request.headers.getall("X-Forwarded-Host", ()) for h in v.split(",")]
        return names

    def host(self, request) -> str | None:
        """The ``Host`` the client asked for (a trusted proxy's ``X-Forwarded-Host``, else ``Host``)."""
        if self.peer_trusted(request):
            forwarded = _last(request.headers, "X-Forwarded-Host")
            if forwarded:
                return forwarded
        return request.headers.get("Host")

    def secure(self, request) -> bool:
        """Whether the client's connection used TLS: to the gateway itself, or to a trusted proxy
        that says so with ``X-Forwarded-Proto: https``."""
        if request.secure:
            return True
        if not self.peer_trusted(request):
            return False
        proto = _last(request.headers, "X-Forwarded-Proto")
        return proto is not None and proto.lower() == "https"


__all__ = ["TrustedProxies", "is_loopback", "local_url", "loopback_host", "parse_ip"]
