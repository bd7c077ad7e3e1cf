"""What the admin routes of collections do: create one, describe them, add embedded chunks.

Creating asks the embeddings model once (the length of its vectors decides the table the
chunks go to, ``llm_chunks_d<dims>``) and writes the ``llm_collections`` row. Adding embeds the
chunks through the gateway (``Embedder``, as the collection's tenant) and writes one row per
chunk, with ``version`` the time in microseconds, so a document added again replaces its
chunks of the same index; its chunks beyond its new length are marked deleted (``trim``).
Both are written through the request log; the ingester inserts them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import GatewayError, InvalidRequestError, NotFoundError, ServiceUnavailableError
from gateway.retrieval.chunking import check_sizes, chunk_id
from gateway.retrieval.collections import Collection, check_name, collection_row
from gateway.retrieval.search import Caller, Retriever

MAX_CHUNKS_PER_CALL = 1024
_CREATE_FIELDS = {"name", "embedding_model", "chunk_size", "chunk_overlap", "description", "tenant"}
_CHUNK_FIELDS = {"doc_id", "chunk_index", "text", "metadata"}
# What a new collection's model is asked to embed, to learn the length of its vectors.
_PROBE = "collection dimension probe"

_COUNTS_SQL = """
SELECT c AS collection, count() AS chunks, uniqExact(d) AS documents FROM (
  SELECT chunk_id, argMax(collection, version) AS c, argMax(doc_id, version) AS d, argMax(deleted, version) AS gone
  FROM `{database}`.`{table}` WHERE collection IN {{names:Array(String)}} GROUP BY chunk_id
) WHERE NOT gone GROUP BY c
"""


_LIVE_SQL = """
SELECT d AS doc_id, i AS chunk_index, e AS embedding FROM (
  SELECT chunk_id, argMax(doc_id, version) AS d, argMax(chunk_index, version) AS i, argMax(embedding, version) AS e,
         argMax(deleted, version) AS gone
  FROM `{database}`.`{table}` WHERE collection = {{collection:String}} AND doc_id IN {{docs:Array(String)}}
  GROUP BY chunk_id
) WHERE NOT gone
"""


class CollectionExists(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "collection_exists"


@dataclass(frozen=True)
class CreateSpec:
    name: str
    embedding_model: str
    chunk_size: int = 800
    chunk_overlap: int = 100
    description: str = ""
    tenant: str = ""


def _int(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if type(value) is not int:
        raise InvalidRequestError(f"'{name}' must be an integer.", param=name)
    return value


def _str(body: dict[str, Any], name: str, default: str = "", *, required: bool = False) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or (required and not value):
        raise InvalidRequestError(f"'{name}' must be a{' non-empty' if required else ''} string.", param=name)
    return value


def parse_create(body: dict[str, Any]) -> CreateSpec:
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise InvalidRequestError(f"Unknown field {unknown[0]!r}.", param=unknown[0])
    spec = CreateSpec(_str(body, "name", required=True), _str(body, "embedding_model", required=True),
                      _int(body, "chunk_size", 800), _int(body, "chunk_overlap", 100), _str(body, "description"),
                      _str(body, "tenant"))
    try:
        check_name(spec.name)
        check_sizes(spec.chunk_size, spec.chunk_overlap)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="name" if "name" in str(exc) else "chunk_size") from None
    if len(spec.tenant) > 128:
        raise InvalidRequestError("'tenant' is at most 128 characters.", param="tenant")
    return spec


def _sink_or_503(sink: Any) -> Any:
    if sink is None:
        raise ServiceUnavailableError("collections are stored in the telemetry store, which is off here "
                                      "(telemetry.enabled: false or LLM_GATEWAY_TELEMETRY=off)",
                                      code="store_unavailable")
    return sink


async def create(retriever: Retriever, sink: Any, spec: CreateSpec, caller: Caller) -> Collection:
    """Create the collection ``spec`` names (409 when the name is taken)."""
    _sink_or_503(sink)
    if await retriever.registry.get(spec.name) is not None:
        raise CollectionExists(f"A collection named {spec.name!r} already exists.", param="name")
    vector = (await retriever.embedder.embed([_PROBE], spec.embedding_model, request=caller.request,
                                             headers=caller.headers, grant=caller.grant, tenant=spec.tenant,
                                             parent=caller.parent,
                                             tags={"retrieval": "create", "collection": spec.name}))[0]
    collection = Collection(spec.name, spec.embedding_model, len(vector), spec.chunk_size, spec.chunk_overlap,
                            spec.description, spec.tenant, time.time())
    sink.emit_row(*collection_row(collection, time.time_ns() // 1000))
    retriever.registry.remember(collection)
    return collection


async def describe(retriever: Retriever, name: str | None) -> list[dict[str, Any]]:
    """Collections (``name``: that one, else every one) with their chunk and document counts."""
    from gateway.telemetry import vectors

    if name is not None:
        one = await retriever.registry.get(name)
        if one is None:
            raise NotFoundError(f"The collection {name!r} does not exist.", code="collection_not_found", param="name")
        listed = [one]
    else:
        listed = await retriever.registry.all()
    counts: dict[str, dict[str, Any]] = {}
    for dims in sorted({c.dims for c in listed}):
        sql = _COUNTS_SQL.format(database=retriever.database(), table=vectors.table_name(vectors.CHUNKS, dims))
        for row in await retriever.rows(sql, {"names": [c.name for c in listed if c.dims == dims]}):
            counts[row["collection"]] = row
    return [{**c.as_json(), "chunks": int(counts.get(c.name, {}).get("chunks", 0)),
             "documents": int(counts.get(c.name, {}).get("documents", 0))} for c in listed]


def parse_documents(body: dict[str, Any]) -> dict[str, int]:
    """An add request's ``documents``: doc_id → how many chunks it has now (its chunks of a
    higher index, from an earlier version of it, are removed). ``{}`` when not given."""
    documents = body.get("documents", {})
    if not isinstance(documents, dict) or not all(
            isinstance(k, str) and type(v) is int and v >= 0 for k, v in documents.items()):
        raise InvalidRequestError("'documents' must be an object of doc_id to chunk counts.", param="documents")
    return documents


def parse_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``chunks`` of an add request, checked (400 naming the first bad one)."""
    unknown = sorted(set(body) - {"chunks", "documents"})
    if unknown:
        raise InvalidRequestError(f"Unknown field {unknown[0]!r} (an add takes chunks and documents).",
                                  param=unknown[0])
    chunks = body.get("chunks")
    if not isinstance(chunks, list) or not chunks:
        raise InvalidRequestError("'chunks' must be a non-empty array.", param="chunks")
    if len(chunks) > MAX_CHUNKS_PER_CALL:
        raise InvalidRequestError(f"at most {MAX_CHUNKS_PER_CALL} chunks a call.", param="chunks")
    for i, c in enumerate(chunks):
        where = f"chunks[{i}]"
        if not isinstance(c, dict) or set(c) - _CHUNK_FIELDS:
            raise InvalidRequestError(f"{where} must be an object of doc_id, chunk_index, text, metadata.", param=where)
        if not isinstance(c.get("doc_id"), str) or not c["doc_id"]:
            raise InvalidRequestError(f"{where}.doc_id must be a non-empty string.", param=f"{where}.doc_id")
        if type(c.get("chunk_index")) is not int or c["chunk_index"] < 0:
            raise InvalidRequestError(f"{where}.chunk_index must be an integer >= 0.", param=f"{where}.chunk_index")
        if not isinstance(c.get("text"), str) or not c["text"].strip():
            raise InvalidRequestError(f"{where}.text must be a non-empty string.", param=f"{where}.text")
        meta = c.get("metadata", {})
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise InvalidRequestError(f"{where}.metadata must be an object of strings.", param=f"{where}.metadata")
    return chunks


async def add_chunks(retriever: Retriever, sink: Any, collection: Collection, chunks: list[dict[str, Any]],
                     caller: Caller) -> int:
    """Embed ``chunks`` and write their rows; returns how many."""
    from gateway.telemetry import vectors
    from gateway.telemetry.values import format_ts

    _sink_or_503(sink)
    embedded = await retriever.embedder.embed([c["text"] for c in chunks], collection.embedding_model,
                                              request=caller.request, headers=caller.headers, grant=caller.grant,
                                              tenant=collection.tenant, parent=caller.parent,
                                              tags={"retrieval": "add", "collection": collection.name})
    if any(len(v) != collection.dims for v in embedded):
        raise ServiceUnavailableError(f"the model {collection.embedding_model!r} no longer answers vectors of length "
                                      f"{collection.dims}: this collection cannot take new chunks",
                                      code="embedding_length_changed")
    table = vectors.table_name(vectors.CHUNKS, collection.dims)
    names = vectors.CHUNK_COLUMN_NAMES
    now = time.time()
    version = time.time_ns() // 1000
    for c, vector in zip(chunks, embedded):
        values = {"collection": collection.name, "doc_id": c["doc_id"], "chunk_index": c["chunk_index"],
                  "chunk_id": chunk_id(collection.name, c["doc_id"], c["chunk_index"]), "text": c["text"],
                  "metadata": dict(c.get("metadata") or {}), "embedding_model": collection.embedding_model,
                  "embedding": vectors.format_vector(vector), "added": format_ts(now), "version": version,
                  "deleted": False}
        sink.emit_row(table, names, [values[n] for n in names])
    return len(chunks)


async def trim(retriever: Retriever, sink: Any, collection: Collection, documents: dict[str, int]) -> int:
    """Remove the stored chunks of ``documents`` beyond their new count (a document added again
    that is shorter now); returns how many. A removed chunk is a row marked ``deleted`` with a
    newer version and the old embedding, so a search that proposes it also sees it is gone."""
    from gateway.telemetry import vectors
    from gateway.telemetry.values import format_ts

    if not documents:
        return 0
    table = vectors.table_name(vectors.CHUNKS, collection.dims)
    sql = _LIVE_SQL.format(database=retriever.database(), table=table)
    live = await retriever.rows(sql, {"collection": collection.name, "docs": sorted(documents)})
    stale = [r for r in live if int(r["chunk_index"]) >= documents.get(r["doc_id"], 1 << 31)]
    names = vectors.CHUNK_COLUMN_NAMES
    now, version = time.time(), time.time_ns() // 1000
    for r in stale:
        values = {"collection": collection.name, "doc_id": r["doc_id"], "chunk_index": int(r["chunk_index"]),
                  "chunk_id": chunk_id(collection.name, r["doc_id"], int(r["chunk_index"])), "text": "",
                  "metadata": {}, "embedding_model": collection.embedding_model,
                  "embedding": vectors.format_vector(r["embedding"]), "added": format_ts(now), "version": version,
                  "deleted": True}
        sink.emit_row(table, names, [values[n] for n in names])
    return len(stale)


__all__ = ["CollectionExists", "CreateSpec", "add_chunks", "create", "describe", "parse_chunks", "parse_create",
           "parse_documents", "trim"]
