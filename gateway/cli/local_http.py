"""How the command line reaches a gateway on this machine: at which address, and not through
the environment's proxy.

A gateway records where it serves in the telemetry data folder it holds
(``gateway.cli.preflight.holder_url``), so ``serve --port 9000`` is found by ``query`` and the
others although the config says 8080; without a running gateway there, the config's
``server.host``/``server.port`` is the address.

``query``, ``drift``, ``sessions``, ``dataset``, ``chains run`` and ``demo`` call a gateway over
HTTP. ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` name a proxy for reaching other machines, and
httpx sends every request through it unless ``NO_PROXY`` lists the host. A gateway on this machine
must be reached directly: a proxy cannot reach this machine's loopback address (on an air-gapped
machine it may not answer at all), and the admin key has no business passing through one. A
gateway elsewhere is still reached the way the environment says.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway.access.proxies import is_loopback, local_url

if TYPE_CHECKING:
    from gateway.config import ConfigSnapshot


def gateway_url(snapshot: ConfigSnapshot, data_dir: str | None = None) -> str | None:
    """The base URL of the gateway serving ``snapshot``'s data folder (``--data-dir`` or the
    config's), else of the config's ``server`` address. ``None`` when ``data_dir`` names a folder
    no running gateway holds: the gateway at the config's address serves another folder, and the
    caller reads the named one itself."""
    from gateway.cli.preflight import holder_url

    recorded = holder_url(Path(snapshot.config.telemetry.resolved_data_dir(data_dir)))
    if recorded or data_dir is not None:
        return recorded
    server = snapshot.config.server
    return local_url(server.host, server.port)


def trust_env(url: str) -> bool:
    """``httpx``'s ``trust_env`` for ``url``: ``False`` for a loopback host (``localhost``,
    ``127.0.0.0/8``, ``::1``), so proxies in the environment are not used for it."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    return not (host == "localhost" or is_loopback(host))


__all__ = ["gateway_url", "trust_env"]
