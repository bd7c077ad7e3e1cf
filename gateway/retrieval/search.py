"""Searching a collection: embed the query through the gateway, then the nearest chunks by
cosine distance (ClickHouse's HNSW index), with optional metadata filters.

``Retriever.search`` serves ``POST /v1/collections/{name}/search`` and a chain's retrieve
step alike: it finds the collection (``CollectionRegistry``), checks the caller may read it
(404 for an unknown or another tenant's, 403 outside the key's ``collections``), embeds the
query with the collection's model (``Embedder``: a logged, costed request), and runs
``vectors.search_chunks_sql`` on the ``vectors`` query lane. Filters are equality on
``metadata[key]``. A collection with no chunk stored yet answers no hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.retrieval.collections import (
    Collection,
    CollectionRegistry,
    StoreUnavailable,
    check_access,
    log_store_failure,
)
from gateway.retrieval.embed import Embedder

MAX_K = 100
# The HNSW index proposes this many candidates per hit asked for; the filters, the newest
# version of each chunk and the deleted ones are then applied to those.
_CANDIDATES_PER_HIT = 10
_MAX_CANDIDATES = 2000


@dataclass(frozen=True)
class Hit:
    """One chunk found, and its cosine distance to the query (0 = same direction)."""

    id: str
    doc_id: str
    chunk_index: int
    text: str
    metadata: dict[str, str]
    distance: float

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "doc_id": self.doc_id, "chunk_index": self.chunk_index, "text": self.text,
                "metadata": self.metadata, "distance": self.distance}


@dataclass(frozen=True)
class Caller:
    """Who searches: ``key`` (a ``KeyPolicy``; ``None``: the admin key, or no keys), the grant
    its embeddings run as (``None`` without keys), the request it came with, and the id of the
    request the embeddings call serves."""

    key: Any
    grant: Any
    request: Any
    headers: Any
    parent: str
    purpose: str = "search"
    session: str = ""  # the session the embeddings call joins (a chain's)
    tags: dict[str, str] | None = None  # more metadata for the embeddings call's row


class Retriever:
    """Collection look-up, permission, query embedding and vector search in one call."""

    def __init__(self, registry: CollectionRegistry, embedder: Embedder, lanes: Any, database: Any, lane: str):
        self.registry = registry
        self.embedder = embedder
        self._lanes = lanes  # () -> QueryLanes | None
        self._database = database  # () -> the telemetry database's name
        self._lane = lane

    async def collection(self, name: str, caller: Caller) -> Collection:
        """The collection ``name`` if ``caller`` may read it (else the 404/403 error)."""
        return check_access(await self.registry.get(name), name, caller.key)

    async def search(self, name: str, query: str, k: int, filters: dict[str, str],
                     caller: Caller) -> tuple[Collection, list[Hit]]:
        """The ``k`` chunks of collection ``name`` nearest to ``query``, nearest first."""
        collection = await self.collection(name, caller)
        tenant = collection.tenant if caller.key is None or getattr(caller.key, "admin", False) else ""
        vector = (await self.embedder.embed([query], collection.embedding_model, request=caller.request,
                                            headers=caller.headers, grant=caller.grant, tenant=tenant,
                                            parent=caller.parent, session=caller.session,
                                            tags={**(caller.tags or {}), "retrieval": caller.purpose,
                                                  "collection": name}))[0]
        return collection, await self.nearest(collection, vector, k, filters)

    def database(self) -> str:
        return self._database()

    async def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of ``sql`` (read-only, on this retriever's lane); ``[]`` for a table that does
        not exist yet. Raises ``StoreUnavailable``."""
        from gateway.telemetry import vectors
        from gateway.telemetry.lanes import QueryBusy

        lanes = self._lanes()
        if lanes is None:
            raise StoreUnavailable("collections live in the telemetry store, which is off here",
                                   code="store_unavailable")
        try:
            data = await lanes.query(self._lane, sql, "JSONEachRow", params)
        except QueryBusy as exc:
            raise StoreUnavailable(str(exc), code="busy", headers={"Retry-After": "1"}) from None
        except Exception as exc:
            if vectors.is_unknown_table(exc):
                return []  # no chunk of this length was ever stored
            log_store_failure(exc)
            raise StoreUnavailable(f"the telemetry store could not be read ({type(exc).__name__})",
                                   code="store_unavailable") from None
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]

    async def nearest(self, collection: Collection, vector: list[float], k: int,
                      filters: dict[str, str]) -> list[Hit]:
        """The stored chunks of ``collection`` nearest to ``vector`` (see ``search``)."""
        from gateway.telemetry import vectors

        if len(vector) != collection.dims:
            raise StoreUnavailable(f"the collection {collection.name!r} holds vectors of length {collection.dims}, its "
                                   f"model {collection.embedding_model!r} now answers {len(vector)}",
                                   code="embedding_length_changed")
        keys = sorted(filters)
        sql = vectors.search_chunks_sql(self._database(), collection.dims, keys)
        params: dict[str, Any] = {"collection": collection.name, "k": k,
                                  "candidates": min(_MAX_CANDIDATES, max(k * _CANDIDATES_PER_HIT, 50))}
        for i, key in enumerate(keys):
            params[f"fk{i}"], params[f"f{i}"] = key, filters[key]
        rows = await self.rows(sql, vectors.search_params(vector, **params))
        return [Hit(row["chunk_id"], row["doc_id"], int(row["chunk_index"]), row["text"], dict(row["metadata"]),
                    round(float(row["distance"]), 6)) for row in rows]


__all__ = ["MAX_K", "Caller", "Hit", "Retriever"]
