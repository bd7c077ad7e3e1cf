"""Whether the command line's HTTP calls may use the environment's proxy settings.

``query``, ``drift``, ``sessions``, ``dataset``, ``chains run`` and ``demo`` call a gateway over
HTTP. ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` name a proxy for reaching other machines, and
httpx sends every request through it unless ``NO_PROXY`` lists the host. A gateway on this machine
must be reached directly: a proxy cannot reach this machine's loopback address (on an air-gapped
machine it may not answer at all), and the admin key has no business passing through one. A
gateway elsewhere is still reached the way the environment says.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.proxies import is_loopback


def trust_env(url: str) -> bool:
    """``httpx``'s ``trust_env`` for ``url``: ``False`` for a loopback host (``localhost``,
    ``127.0.0.0/8``, ``::1``), so proxies in the environment are not used for it."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    return not (host == "localhost" or is_loopback(host))


__all__ = ["trust_env"]
