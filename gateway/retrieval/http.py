"""The HTTP routes of retrieval collections.

For apps (under the key's permissions; see ``gateway.retrieval.collections``):

- ``POST /v1/collections/{name}/search`` — body ``{"query": str, "k": 1..100 (default 5),
  "filter": {key: value}}``; answers ``{"object": "list", "data": [{id, doc_id, chunk_index,
  text, metadata, distance}], "collection", "model"}``, nearest first. 400 for a bad body, 404
  for an unknown collection (or another tenant's), 403 outside the key's ``collections``.

For the admin (``llm-gateway collections``; behind the one admin check):

- ``POST /admin/collections`` — create: ``{name, embedding_model, chunk_size, chunk_overlap,
  description, tenant}``; the model is asked once for the length of its vectors (201).
- ``GET /admin/collections`` and ``GET /admin/collections/{name}`` — collections and how many
  chunks each holds in the store.
- ``POST /admin/collections/{name}/search`` — the search above, as the admin (any tenant's
  collection): what ``collections search`` uses without ``--api-key``.
- ``POST /admin/collections/{name}/chunks`` — ``{"chunks": [{doc_id, chunk_index, text,
  metadata}], "documents": {doc_id: chunk count}}``: embedded through the gateway (rows tagged
  ``retrieval: add``, tenant the collection's) and written as rows of the collection's vector
  table; the ingester inserts them seconds later (``POST /admin/telemetry/flush`` waits for
  that). ``documents`` (optional): those documents' stored chunks beyond the count are removed.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.core.errors import NOT_JSON, GatewayError, InvalidRequestError
from gateway.retrieval import admin_ops
from gateway.retrieval.search import MAX_K, Caller, Retriever

_JSON = "application/json"
_SEARCH_FIELDS = frozenset({"query", "k", "filter"})


def _error(exc: GatewayError, request_id: str) -> web.Response:
    return web.Response(status=exc.status, body=exc.body(), content_type=_JSON,
                        headers={"x-request-id": request_id, **exc.headers})


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body, or a 400."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:  # not JSON, or JSON orjson refuses (a lone surrogate \ud800)
        raise InvalidRequestError(NOT_JSON) from None
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return body


def parse_filter(value: Any) -> dict[str, str]:
    """A search's ``filter``: an object of string values (metadata key → value to equal)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidRequestError("'filter' must be an object of metadata keys to string values.", param="filter")
    return dict(value)


def parse_search(body: dict[str, Any]) -> tuple[str, int, dict[str, str]]:
    """``(query, k, filter)`` of a search body, or a 400 naming the field."""
    unknown = sorted(set(body) - _SEARCH_FIELDS)
    if unknown:
        raise InvalidRequestError(f"Unknown field {unknown[0]!r} (a search takes query, k and filter).",
                                  param=unknown[0])
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequestError("'query' must be a non-empty string.", param="query")
    k = body.get("k", 5)
    if type(k) is not int or not 1 <= k <= MAX_K:
        raise InvalidRequestError(f"'k' must be an integer from 1 to {MAX_K}.", param="k")
    return query, k, parse_filter(body.get("filter"))


def _no_headers() -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict())


class CollectionsAPI:
    """The handlers; ``retriever`` does the work, ``caller_of`` says who a request is."""

    def __init__(self, retriever: Retriever, caller_of, sink, admin_grant):
        self._retriever = retriever
        self._caller_of = caller_of  # request, request id -> Caller
        self._sink = sink  # () -> RequestLog | None
        self._admin_grant = admin_grant  # () -> the admin key's grant for in-process calls, or None

    async def search(self, request: web.Request) -> web.Response:
        return await self._search(request, admin=False)

    async def admin_search(self, request: web.Request) -> web.Response:
        return await self._search(request, admin=True)

    async def _search(self, request: web.Request, admin: bool) -> web.Response:
        rid = (request.headers.get("x-request-id") or str(uuid.uuid4()))[:128]
        try:
            query, k, filters = parse_search(await read_json(request))
            caller = self._admin_caller(request, rid, "search") if admin else self._caller_of(request, rid)
            collection, hits = await self._retriever.search(request.match_info["name"], query, k, filters, caller)
        except GatewayError as exc:
            return _error(exc, rid)
        return web.json_response({"object": "list", "data": [h.as_json() for h in hits],
                                  "collection": collection.name, "model": collection.embedding_model},
                                 headers={"x-request-id": rid})

    def _admin_caller(self, request: web.Request, rid: str, purpose: str = "add") -> Caller:
        return Caller(key=None, grant=self._admin_grant(), request=request, headers=_no_headers(), parent=rid,
                      purpose=purpose)

    async def create(self, request: web.Request) -> web.Response:
        rid = str(uuid.uuid4())
        try:
            spec = admin_ops.parse_create(await read_json(request))
            collection = await admin_ops.create(self._retriever, self._sink(), spec,
                                                self._admin_caller(request, rid))
        except GatewayError as exc:
            return _error(exc, rid)
        return web.json_response(collection.as_json(), status=201, headers={"x-request-id": rid})

    async def list(self, request: web.Request) -> web.Response:
        rid = str(uuid.uuid4())
        try:
            listed = await admin_ops.describe(self._retriever, None)
        except GatewayError as exc:
            return _error(exc, rid)
        return web.json_response({"object": "list", "data": listed})

    async def show(self, request: web.Request) -> web.Response:
        rid = str(uuid.uuid4())
        try:
            listed = await admin_ops.describe(self._retriever, request.match_info["name"])
        except GatewayError as exc:
            return _error(exc, rid)
        return web.json_response(listed[0])

    async def add_chunks(self, request: web.Request) -> web.Response:
        rid = str(uuid.uuid4())
        t0 = time.perf_counter()
        try:
            body = await read_json(request)
            chunks, documents = admin_ops.parse_chunks(body), admin_ops.parse_documents(body)
            caller = self._admin_caller(request, rid)
            collection = await self._retriever.collection(request.match_info["name"], caller)
            added = await admin_ops.add_chunks(self._retriever, self._sink(), collection, chunks, caller)
            removed = await admin_ops.trim(self._retriever, self._sink(), collection, documents)
        except GatewayError as exc:
            return _error(exc, rid)
        return web.json_response({"collection": collection.name, "added": added, "removed": removed,
                                  "embedding_model": collection.embedding_model,
                                  "seconds": round(time.perf_counter() - t0, 3)}, headers={"x-request-id": rid})


__all__ = ["CollectionsAPI", "parse_filter", "parse_search", "read_json"]
