"""Retrieval collections: what one is, its rows, and who may read it.

A collection is a row of ``llm_collections`` (name, owning tenant, embeddings model and the
length of its vectors, chunking settings); its chunks are rows of ``llm_chunks_d<dims>``
(``gateway.telemetry.vectors``). Both are written as table rows of the request log
(``RequestLog.emit_row``), so the ingester inserts them like any row, seconds later.

``CollectionRegistry`` reads collections back through the read-only query lanes and keeps each
answer briefly (``ttl_s``), so a search does not cost a look-up; a name not found is asked again
after ``miss_ttl_s`` (a collection just created by another process is found soon).

Who may read a collection (``may_read``): the admin key and a gateway without keys, every one;
a virtual key, those of its own tenant and the shared ones (tenant ``""``), and of those only
the names its ``collections`` globs match. A collection of another tenant is answered as
unknown (404), never as forbidden: a tenant does not learn that it exists.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.core.errors import NotFoundError, PermissionDeniedError, ServiceUnavailableError
from gateway.telemetry.columns import COLLECTION_COLUMN_NAMES, COLLECTIONS
from gateway.telemetry.values import format_ts

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_SELECT = f"""
SELECT name, argMax(tenant, version) AS tenant, argMax(embedding_model, version) AS embedding_model,
       argMax(dims, version) AS dims, argMax(chunk_size, version) AS chunk_size,
       argMax(chunk_overlap, version) AS chunk_overlap, argMax(description, version) AS description,
       toUnixTimestamp64Milli(argMax(created, version)) AS created_ms, argMax(deleted, version) AS gone
FROM {COLLECTIONS} {{where}} GROUP BY name HAVING NOT gone ORDER BY name
"""


@dataclass(frozen=True)
class Collection:
    """One collection as ``llm_collections`` holds it."""

    name: str
    embedding_model: str
    dims: int
    chunk_size: int
    chunk_overlap: int
    description: str = ""
    tenant: str = ""
    created: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "tenant": self.tenant, "embedding_model": self.embedding_model,
                "dims": self.dims, "chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap,
                "description": self.description, "created": round(self.created, 3)}


def check_name(name: str) -> None:
    """``ValueError`` unless ``name`` is 1-64 letters, digits, ``_ . -`` (a letter or digit first)."""
    if not NAME_RE.match(name):
        raise ValueError("a collection name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")


def collection_row(c: Collection, version: int, deleted: bool = False) -> tuple[str, tuple[str, ...], list[Any]]:
    """The ``llm_collections`` row of ``c`` (``version`` orders a name's rows: the newest wins)."""
    values = {"name": c.name, "tenant": c.tenant, "embedding_model": c.embedding_model, "dims": c.dims,
              "chunk_size": c.chunk_size, "chunk_overlap": c.chunk_overlap, "description": c.description,
              "created": format_ts(c.created), "deleted": deleted, "version": version}
    return COLLECTIONS, COLLECTION_COLUMN_NAMES, [values[name] for name in COLLECTION_COLUMN_NAMES]


def _from_row(row: dict[str, Any]) -> Collection:
    return Collection(name=row["name"], embedding_model=row["embedding_model"], dims=int(row["dims"]),
                      chunk_size=int(row["chunk_size"]), chunk_overlap=int(row["chunk_overlap"]),
                      description=row["description"], tenant=row["tenant"], created=int(row["created_ms"]) / 1000)


def may_read(collection: Collection, key: Any) -> bool:
    """Whether ``key`` (a ``KeyPolicy``; ``None``: the admin key, or no keys) may read it, once
    its tenant may see it at all (``visible``)."""
    return key is None or key.allows_collection(collection.name)


def visible(collection: Collection, key: Any) -> bool:
    """Whether the caller's tenant may know ``collection`` exists (its own or a shared one)."""
    return key is None or getattr(key, "admin", False) or collection.tenant in ("", key.tenant)


def check_access(collection: Collection | None, name: str, key: Any) -> Collection:
    """``collection`` if ``key`` may read it; else 404 (unknown, or another tenant's) or 403."""
    if collection is None or not visible(collection, key):
        raise NotFoundError(f"The collection {name!r} does not exist.", code="collection_not_found", param="name")
    if not may_read(collection, key):
        raise PermissionDeniedError(f"This key may not use the collection {name!r}. Ask your gateway admin to add it "
                                    "to the key's `collections`.", code="collection_not_allowed")
    return collection


class StoreUnavailable(ServiceUnavailableError):
    """The store could not be asked (telemetry off, the lane busy, the store down): 503."""


class CollectionRegistry:
    """Collections read through ``lanes`` (a ``QueryLanes``; ``None``: telemetry off), kept briefly."""

    def __init__(self, lanes: Any, lane: str, *, ttl_s: float = 30.0, miss_ttl_s: float = 1.0):
        self._lanes = lanes
        self._lane = lane
        self._ttl_s = ttl_s
        self._miss_ttl_s = miss_ttl_s
        self._known: dict[str, tuple[float, Collection | None]] = {}
        self._lock = asyncio.Lock()

    def remember(self, collection: Collection) -> None:
        """Know ``collection`` now (just created here: its row reaches the store seconds later)."""
        self._known[collection.name] = (time.monotonic() + self._ttl_s, collection)

    async def get(self, name: str) -> Collection | None:
        """The collection named ``name``, or ``None``. Raises ``StoreUnavailable``."""
        entry = self._known.get(name)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        found = await self._select("WHERE name = {name:String}", {"name": name})
        collection = found[0] if found else None
        if collection is None and entry is not None and entry[1] is not None:
            collection = entry[1]  # known here, not yet in the store (just created)
        ttl = self._ttl_s if collection is not None else self._miss_ttl_s
        if len(self._known) > 4096:
            self._known.clear()
        self._known[name] = (now + ttl, collection)
        return collection

    async def all(self) -> list[Collection]:
        """Every collection (for listing), straight from the store, plus any created here since."""
        found = {c.name: c for c in await self._select("", {})}
        for name, (_, known) in self._known.items():
            if known is not None and name not in found:
                found[name] = known
        return [found[n] for n in sorted(found)]

    async def _select(self, where: str, params: dict[str, Any]) -> list[Collection]:
        if self._lanes is None:
            raise StoreUnavailable("collections live in the telemetry store, which is off here "
                                   "(telemetry.enabled: false or LLM_GATEWAY_TELEMETRY=off)", code="store_unavailable")
        from gateway.telemetry.lanes import QueryBusy

        try:
            data = await self._lanes.query(self._lane, _SELECT.format(where=where), "JSONEachRow", params)
        except QueryBusy as exc:
            raise StoreUnavailable(str(exc), code="busy", headers={"Retry-After": "1"}) from None
        except Exception as exc:
            if "UNKNOWN_TABLE" in str(exc) or "Code: 60." in str(exc):
                return []  # no migration yet made the table: no collection
            log_store_failure(exc)
            raise StoreUnavailable(f"the telemetry store could not be read ({type(exc).__name__})",
                                   code="store_unavailable") from None
        return [_from_row(orjson.loads(line)) for line in data.splitlines() if line.strip()]


def log_store_failure(exc: Exception) -> None:
    """The store's own words go to the log (secrets scrubbed), not to the caller."""
    import logging

    from gateway.telemetry.scrub import scrub_secrets

    logging.getLogger("gateway.retrieval").warning("collection store query failed: %s",
                                                   scrub_secrets(str(exc))[:500])


__all__ = ["Collection", "CollectionRegistry", "StoreUnavailable", "check_access", "check_name", "collection_row",
           "log_store_failure", "may_read", "visible"]
