"""Retrieval collections: documents chunked, embedded through the gateway and searched by
vector distance in the telemetry store (docs/retrieval.md).

- ``chunking``: text, Markdown and JSONL files into chunks (size and overlap in characters);
- ``collections``: a collection, its rows, the registry that reads them back, who may read one;
- ``embed``: embeddings through the gateway's own route, in-process (each call a costed row);
- ``search``: the query embedded, the nearest chunks by cosine distance, metadata filters;
- ``admin_ops`` and ``http``: ``POST /v1/collections/{name}/search`` for apps and the
  ``/admin/collections`` routes ``llm-gateway collections`` uses;
- a chain's ``retrieve`` step uses the same ``Retriever`` (``gateway.chains.runner``).

``CollectionsFeature`` contributes only routes: no stage, no finisher, so a request that is not
a collection's costs nothing here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.core.feature import Feature, Routes

__all__ = ["CollectionsFeature"]


class CollectionsFeature(Feature):
    """The collection routes over one ``Retriever`` (also handed to the chains feature);
    ``database``: the telemetry tables' database (``TelemetryFeature.database``)."""

    name = "collections"

    def __init__(self, app: web.Application, handlers: Any, runtime: Any, database: str):
        from gateway.retrieval.collections import CollectionRegistry
        from gateway.retrieval.embed import Embedder
        from gateway.retrieval.search import Retriever
        from gateway.telemetry import QUERY_LANES, SINK
        from gateway.telemetry.lanes import VECTORS

        self._app = app
        lanes = app.get(QUERY_LANES) if app.get(SINK) is not None else None  # telemetry off: no store

        self.retriever = Retriever(CollectionRegistry(lanes, VECTORS), Embedder(handlers, runtime), lambda: lanes,
                                   lambda: database, VECTORS)

    def _caller(self, request: web.Request, request_id: str):
        """Who sends ``request``: its virtual key (checked by the middleware), else the admin
        key (keys mode) or anyone (no keys)."""
        from gateway.access.auth import authenticated_key
        from gateway.retrieval.search import Caller

        key = authenticated_key(request)
        if key is not None:
            return Caller(key=key, grant=key, request=request, headers=request.headers, parent=request_id)
        return Caller(key=None, grant=self._admin_grant(), request=request, headers=request.headers,
                      parent=request_id)

    def _admin_grant(self):
        from gateway.access.auth import ACCESS

        layer = self._app.get(ACCESS)
        return layer.policy.admin_policy if layer is not None and layer.policy.mode == "keys" else None

    def routes(self, routes: Routes) -> None:
        from gateway.retrieval.http import CollectionsAPI
        from gateway.telemetry import SINK

        app = self._app
        api = CollectionsAPI(self.retriever, self._caller, lambda: app.get(SINK), self._admin_grant)
        routes.post("/v1/collections/{name}/search", api.search)
        routes.admin_post("/admin/collections", api.create)
        routes.admin_get("/admin/collections", api.list)
        routes.admin_get("/admin/collections/{name}", api.show)
        routes.admin_post("/admin/collections/{name}/search", api.admin_search)
        routes.admin_post("/admin/collections/{name}/chunks", api.add_chunks)
