"""Vector tables: retrieval chunks and semantic-cache entries, searched by cosine distance.

ClickHouse's HNSW index (``vector_similarity('hnsw', 'cosineDistance', N)``) needs the vectors'
length ``N`` in its DDL, and one embeddings model's length is only known from its first answer.
So each family has a table per length — ``llm_chunks_d384``, ``llm_semantic_cache_d1536`` —
created outside the versioned migrations, by the ingester, just before the first insert into it
(``ClickHouseStore.insert`` calls ``create_statements`` once per table and process). Writers
emit rows through the request log like any table row; readers treat a table that does not exist
yet as empty (``is_unknown_table``).

- ``llm_chunks_d<N>`` (ReplacingMergeTree by ``version``, ``ORDER BY (collection, doc_id,
  chunk_index)``): the chunks of retrieval collections (``gateway.retrieval``). Adding a
  document again replaces its chunks; ``deleted`` rows hide chunks the new text no longer has.
- ``llm_semantic_cache_d<N>`` (MergeTree, ``ORDER BY (tenant, key_hash, ts)``, TTL ``expires``):
  the semantic cache's entries (``gateway.cache.semantic``): the answer as the exact cache
  stores it, the question's embedding, and ``key_hash``, the exact key of everything but the
  question, so a hit needs the same model, parameters, tenant and namespace.

The searches below are parameterised SQL (``{name:Type}``); the query vector is
``{v:Array(Float32)}``; run them with ``SEARCH_SETTINGS`` (the ``vectors`` query lane does).
"""

from __future__ import annotations

import re
from typing import Any

from gateway.telemetry.columns import TIMESTAMP
from gateway.telemetry.schema import SchemaOptions, table_statements

CHUNKS = "llm_chunks"
SEMANTIC = "llm_semantic_cache"
FAMILIES = (CHUNKS, SEMANTIC)
MAX_DIMS = 16_384  # longer vectors than any embeddings model gives: refused, not tabled
UNKNOWN_TABLE = 60  # ClickHouse's error code for a table that does not exist

# The searches filter (a collection; a tenant and key) and rank by distance. With ClickHouse's
# "auto" strategy the HNSW index may propose the nearest rows of the whole table and the filter
# then drops them all, answering nothing although matching rows exist; "prefilter" applies the
# filter first and ranks what it keeps, exactly. The vectors query lane runs with these.
SEARCH_SETTINGS = {"vector_search_filter_strategy": "prefilter"}

_TABLE_RE = re.compile(r"^(llm_chunks|llm_semantic_cache)_d([1-9][0-9]{0,4})$")
# One index granule per part: the graph covers the whole part (ClickHouse's advice for HNSW).
_HNSW_GRANULARITY = 100_000_000

CHUNK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("collection", "LowCardinality(String)"),
    ("doc_id", "String"),  # the file name, or a JSONL line's id
    ("chunk_index", "UInt32"),
    ("chunk_id", "String"),  # stable: derived from (collection, doc_id, chunk_index)
    ("text", "String CODEC(ZSTD(3))"),
    ("metadata", "Map(LowCardinality(String), String)"),
    ("embedding_model", "LowCardinality(String)"),
    ("embedding", "Array(Float32)"),
    ("added", TIMESTAMP),
    ("version", "UInt64"),  # ReplacingMergeTree version: a document added again replaces its chunks
    ("deleted", "Bool"),
)

SEMANTIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tenant", "LowCardinality(String)"),
    ("namespace", "LowCardinality(String)"),
    ("model", "LowCardinality(String)"),  # the public model asked for
    ("key_hash", "String"),  # the exact cache key of the request without its question
    ("entry_id", "UUID"),
    ("request_id", "UUID"),  # the request whose answer this is (a row of llm_requests)
    ("ts", TIMESTAMP),
    ("expires", "DateTime64(3, 'UTC')"),
    ("embedding_model", "LowCardinality(String)"),
    ("embedding", "Array(Float32)"),
    ("question", "String CODEC(ZSTD(3))"),  # the text that was embedded
    ("entry", "String CODEC(ZSTD(3))"),  # the cache entry (gateway.cache.entry), base64
)

CHUNK_COLUMN_NAMES = tuple(name for name, _ in CHUNK_COLUMNS)
SEMANTIC_COLUMN_NAMES = tuple(name for name, _ in SEMANTIC_COLUMNS)


def table_name(family: str, dims: int) -> str:
    """The table of ``family`` (``CHUNKS`` or ``SEMANTIC``) for vectors of length ``dims``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown vector table family {family!r}")
    if not 1 <= dims <= MAX_DIMS:
        raise ValueError(f"vector length {dims} is outside 1..{MAX_DIMS}")
    return f"{family}_d{dims}"


def parse_table(name: str) -> tuple[str, int] | None:
    """``(family, dims)`` of a vector table's name; ``None`` for any other table."""
    m = _TABLE_RE.match(name)
    if m is None or int(m.group(2)) > MAX_DIMS:
        return None
    return m.group(1), int(m.group(2))


def create_statements(table: str, opts: SchemaOptions) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for the vector table ``table`` (a ``Distributed`` front too
    on a cluster). Raises ``ValueError`` for a name that is not a vector table's."""
    parsed = parse_table(table)
    if parsed is None:
        raise ValueError(f"{table!r} is not a vector table")
    family, dims = parsed
    index = (f"INDEX `vec` `embedding` TYPE vector_similarity('hnsw', 'cosineDistance', {dims}) "
             f"GRANULARITY {_HNSW_GRANULARITY}")
    if family == CHUNKS:
        return table_statements(opts, table, CHUNK_COLUMNS, "(collection, doc_id, chunk_index)",
                                kind="ReplacingMergeTree(version)", indexes=(index,),
                                sharding_key="cityHash64(collection, doc_id)")
    return table_statements(opts, table, SEMANTIC_COLUMNS, "(tenant, key_hash, ts)", ttl="toDateTime(expires)",
                            indexes=(index,), sharding_key="cityHash64(tenant, key_hash)")


def is_unknown_table(exc: BaseException) -> bool:
    """Whether ``exc`` (a clickhouse-connect error) says the table does not exist: no vector of
    that length was ever written, so a search finds nothing."""
    text = str(exc)
    return f"Code: {UNKNOWN_TABLE}." in text or "UNKNOWN_TABLE" in text


def format_vector(vector: list[float]) -> list[float]:
    """``vector`` as floats (JSON numbers); ``ValueError`` for anything else or a non-finite value."""
    out = [float(x) for x in vector]
    for x in out:
        if x != x or x in (float("inf"), float("-inf")):
            raise ValueError("an embedding holds a value that is not a finite number")
    return out


def search_chunks_sql(database: str, dims: int, filters: list[str]) -> str:
    """The nearest chunks of collection ``{collection:String}`` to ``{v:Array(Float32)}``, at most
    ``{k:UInt32}``: ``chunk_id, doc_id, chunk_index, text, metadata, distance`` by distance.
    ``filters``: metadata keys to match exactly, each against the parameter ``{f<i>:String}``
    (its value) with key ``{fk<i>:String}``.

    The newest version of each chunk wins and deleted chunks are skipped; ``FINAL`` is not used
    because it turns the HNSW index off, so the index proposes candidates (``k`` times a margin)
    and the filters and de-duplication apply to those."""
    table = f"`{database}`.`{table_name(CHUNKS, dims)}`"
    where = ["collection = {collection:String}"]
    where += [f"metadata[{{fk{i}:String}}] = {{f{i}:String}}" for i in range(len(filters))]
    return (
        "SELECT chunk_id, doc_id, chunk_index, text, metadata, distance FROM (\n"
        "  SELECT chunk_id, argMax(doc_id, version) AS doc_id, argMax(chunk_index, version) AS chunk_index,\n"
        "         argMax(text, version) AS text, argMax(metadata, version) AS metadata,\n"
        "         argMax(deleted, version) AS gone, argMax(distance, version) AS distance\n"
        "  FROM (\n"
        "    SELECT chunk_id, doc_id, chunk_index, text, metadata, deleted, version,\n"
        "           cosineDistance(embedding, {v:Array(Float32)}) AS distance\n"
        f"    FROM {table}\n"
        f"    WHERE {' AND '.join(where)}\n"
        "    ORDER BY distance ASC LIMIT {candidates:UInt32}\n"
        "  ) GROUP BY chunk_id\n"
        ") WHERE NOT gone ORDER BY distance ASC LIMIT {k:UInt32}")


def semantic_lookup_sql(database: str, dims: int) -> str:
    """The stored entry nearest to ``{v:Array(Float32)}`` among those of ``{tenant:String}``,
    ``{namespace:String}`` and ``{key_hash:String}`` written at or after ``{since:DateTime64(3)}``
    and not expired at ``{now:DateTime64(3)}``: ``entry_id, distance, entry`` (one row at most)."""
    table = f"`{database}`.`{table_name(SEMANTIC, dims)}`"
    return (
        "SELECT toString(entry_id) AS entry_id, cosineDistance(embedding, {v:Array(Float32)}) AS distance, entry\n"
        f"FROM {table}\n"
        "WHERE tenant = {tenant:String} AND namespace = {namespace:String} AND key_hash = {key_hash:String}\n"
        "  AND ts >= {since:DateTime64(3)} AND expires > {now:DateTime64(3)}\n"
        "ORDER BY distance ASC LIMIT 1")


def search_params(vector: list[float], **params: Any) -> dict[str, Any]:
    """The parameters of a search: ``v`` (the query vector) and ``params``."""
    return {"v": format_vector(vector), **params}


__all__ = ["CHUNKS", "CHUNK_COLUMNS", "CHUNK_COLUMN_NAMES", "SEARCH_SETTINGS", "SEMANTIC", "SEMANTIC_COLUMNS",
           "SEMANTIC_COLUMN_NAMES",
           "create_statements", "format_vector", "is_unknown_table", "parse_table", "search_chunks_sql",
           "search_params", "semantic_lookup_sql", "table_name"]
