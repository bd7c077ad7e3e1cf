"""Embeddings for retrieval, through the gateway's own embeddings route, in-process.

Documents being added, a search's query and a chain's retrieve step are embedded by a request
of their own to ``embeddings`` (``gateway.proxy.internal_embeddings``) run by
``ProxyHandlers.call_internal`` (as chain steps are): the stages, routing, the attempt loop and
telemetry apply, so each call is a row of ``llm_requests`` with its tokens and cost, linked by
``parent_request_id`` to the request it served and tagged ``retrieval`` (``add``, ``search``,
``chain``) and ``collection``.

The call runs for the caller already checked: its virtual key's grant is handed on
(``gateway.access.auth.delegate``) so the row, limits and budget are the key's, and the
collection's permission stands for the embeddings model's (a key allowed a collection may
embed its queries with that collection's model). Inputs go ``BATCH`` at a time.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.proxy.internal_embeddings import embedding_request, parse_vectors

BATCH = 64


class Embedder:
    """Embeds texts through ``handlers.call_internal`` on the runtime ``runtime()`` returns."""

    def __init__(self, handlers: Any, runtime: Any):
        self._handlers = handlers
        self._runtime = runtime

    async def embed(self, texts: list[str], model: str, *, request: web.Request | None, headers: Any,
                    grant: Any, tenant: str, parent: str, tags: dict[str, str],
                    session: str = "") -> list[list[float]]:
        """The embeddings of ``texts`` with public ``model``, ``BATCH`` inputs a call. ``grant``:
        the caller's access grant (``None`` without keys); ``tenant``: the rows' tenant when no key
        names one; ``parent``: the request these calls serve (``parent_request_id``)."""
        out: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            batch = texts[start:start + BATCH]
            ctx = self._context(batch, model, request, headers, grant, tenant, parent, tags)
            ctx.session_id = session
            response = await self._handlers.call_internal(ctx)
            raw = bytes(response.body) if isinstance(response, web.Response) and \
                isinstance(response.body, (bytes, bytearray)) else b""
            if response.status >= 400:
                raise _refusal(response.status, raw)
            out.extend(parse_vectors(raw, len(batch)))
        return out

    def _context(self, texts: list[str], model: str, request: web.Request | None, headers: Any, grant: Any,
                 tenant: str, parent: str, tags: dict[str, str]) -> RequestContext:
        from gateway.access.auth import delegate

        ctx = embedding_request(model, texts, runtime=self._runtime(), parent=parent, request=request,
                                headers=headers, tenant=tenant, metadata=dict(tags))
        if grant is not None:
            delegate(ctx, grant)
        return ctx


def _refusal(status: int, raw: bytes) -> GatewayError:
    """A failed embeddings call as the error the caller gets (its status, type and code)."""
    message, type_, code = f"HTTP {status}", "upstream_error", "embedding_failed"
    try:
        err = orjson.loads(raw)["error"]
        message = str(err.get("message") or message)
        type_, code = err.get("type") or type_, err.get("code") or code
    except Exception:
        pass
    exc = GatewayError(f"embedding failed: {message}", code=code)
    exc.status, exc.type = status, type_
    return exc


__all__ = ["BATCH", "Embedder"]
