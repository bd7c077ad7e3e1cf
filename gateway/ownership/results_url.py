"""Anthropic Message Batches name where their results are (``results_url``): the backend's own
host. The anthropic SDK fetches that address as it is, with the client's key, so a batch
relayed unchanged would send the tenant's gateway key to the provider and read the results
around the gateway. Answers about batches are rewritten to the gateway's own
``/v1/messages/batches/{id}/results`` (served by ``passthrough:``, owned like the batch), at the
scheme and host the client reached the gateway by (a trusted proxy's ``X-Forwarded-Host`` and
``X-Forwarded-Proto``: ``gateway.access.proxies``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.access.admin_guard import GUARD

MARKER = b"results_url"


def origin(request: web.Request) -> str:
    """``scheme://host`` as the client reached the gateway."""
    guard = request.app.get(GUARD)
    if guard is None:
        return f"{request.scheme}://{request.host}"
    proxies = guard.proxies
    return f"{'https' if proxies.secure(request) else 'http'}://{proxies.host(request) or request.host}"


def point_at_gateway(parsed: Any, base: str) -> bool:
    """Rewrite, in place, the ``results_url`` of each message batch ``parsed`` is or lists to
    ``base``'s; whether any was."""
    listed = parsed.get("data") if isinstance(parsed, dict) else None
    items: list[Any] = listed if isinstance(listed, list) else [parsed]
    changed = False
    for item in items:
        if isinstance(item, dict) and item.get("type") == "message_batch" and isinstance(item.get("id"), str) \
                and isinstance(item.get("results_url"), str):
            item["results_url"] = f"{base}/v1/messages/batches/{quote(item['id'], safe='')}/results"
            changed = True
    return changed


__all__ = ["MARKER", "origin", "point_at_gateway"]
