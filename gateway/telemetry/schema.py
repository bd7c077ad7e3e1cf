"""ClickHouse schema: versioned, idempotent migrations, rendered for one server or a cluster.

Tables (in the configured database):

- ``llm_requests``: one row per client request. MergeTree, ``PARTITION BY toYYYYMM(ts_start)``,
  ``ORDER BY (tenant, model_requested, ts_start)``, optional TTL; bloom-filter skip indexes on
  ``request_id``, ``client_request_id``, ``session_id`` and ``trace_id`` (look-ups by id).
- ``llm_attempts``: one row per upstream attempt, ``ORDER BY (backend, ts_start)``, optional
  TTL; a bloom-filter skip index on ``request_id`` (a request's attempts).
- ``llm_requests_1m``: per-minute rollups by (tenant, model, backend, minute) in an
  AggregatingMergeTree fed by the materialized view ``llm_requests_1m_mv``:
  ``countState``, ``sumState`` (errors, tokens, cost), ``quantilesTDigestState`` (latency,
  TTFT). Read with ``countMerge``/``sumMerge``/``quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)``.
  Since version 6 also ``client_errors`` (4xx), latency and TTFT of successful requests only
  (``ok_latency_ms``, ``ok_ttft_ms``: ``quantilesTDigestIfMerge``) and ``requests_v6``, the
  requests the version-6 view counted: a minute where it is below ``requests`` holds rows from
  before the upgrade, whose new states are empty (readers then use the raw rows).
- ``prompt_versions`` (ReplacingMergeTree by ``(name, version)``): the exact text of every
  prompt version, joinable to ``llm_requests.(prompt_id, prompt_version)``; ``llm_feedback``:
  scores posted to ``/v1/feedback``, joinable on ``request_id``.
- ``llm_eval_runs`` (ReplacingMergeTree by ``run_id``) and ``llm_eval_scores``: evaluation runs
  and their per-item scores (migration 11; ``llm-gateway eval``).
- ``llm_collections`` (ReplacingMergeTree by ``name``): retrieval collections (migration 14).
  Their chunks and the semantic cache's entries live in vector tables made per embedding length
  outside the migrations (``vectors.py``: an HNSW index needs the length in its DDL).
- ``schema_migrations``: which migration versions were applied.

Every table's columns are in ``columns.py``; timestamps are stored ``CODEC(Delta, ZSTD)``.
The TTL is not a migration: ``ttl.ttl_statements`` compares each table's TTL with ``ttl_days`` at
every connect and changes it (``MODIFY TTL``, or ``REMOVE TTL`` when ``ttl_days`` is unset).

Every write is a batch with an insert deduplication token; the tables keep a deduplication
window (``non_replicated_deduplication_window`` on MergeTree; Replicated* engines deduplicate
by default), so a replayed batch is not inserted twice and the materialized view sees it once.

With ``cluster`` set, each table becomes ``<name>_local`` (``Replicated*MergeTree`` ``ON
CLUSTER``) plus a ``Distributed`` table named ``<name>`` that the gateway writes to and
queries read from; the view feeds the local rollup on each shard.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.telemetry.columns import (
    ATTEMPT_COLUMNS,
    COLLECTION_COLUMNS,
    COLLECTIONS,
    EVAL_RUN_COLUMNS,
    EVAL_RUNS,
    EVAL_SCORE_COLUMNS,
    EVAL_SCORES,
    FEEDBACK,
    FEEDBACK_COLUMNS,
    PROMPT_VERSION_COLUMNS,
    PROMPT_VERSIONS,
    REQUEST_COLUMNS,
    TIMESTAMP,
)

DEDUP_WINDOW = 10_000
QUANTILES = "0.5, 0.9, 0.95, 0.99"


@dataclass(frozen=True)
class SchemaOptions:
    """``database``: target database. ``cluster``: ``ON CLUSTER`` name or ``None``.
    ``ttl_days``: row TTL for ``llm_requests``/``llm_attempts`` (``None``: keep forever)."""

    database: str = "default"
    cluster: str | None = None
    ttl_days: int | None = None


@dataclass(frozen=True)
class Migration:
    """One schema version: ``statements`` are idempotent DDL strings."""

    version: int
    name: str
    statements: tuple[str, ...]


def _q(name: str) -> str:
    return f"`{name}`"


class _Renderer:
    def __init__(self, opts: SchemaOptions):
        self.o = opts
        self.db = _q(opts.database)
        self.on_cluster = f" ON CLUSTER {_q(opts.cluster)}" if opts.cluster else ""

    def storage(self, name: str) -> str:
        """The name of the table that physically stores ``name`` (``<name>_local`` on a cluster)."""
        return f"{name}_local" if self.o.cluster else name

    def engine(self, kind: str, name: str) -> str:
        """``kind`` may carry its own arguments (``ReplacingMergeTree(version)``): a replicated
        engine takes them after its path and replica."""
        base, _, args = kind.partition("(")
        args = args.rstrip(")")
        if self.o.cluster:
            path = f"'/clickhouse/tables/{{shard}}/{self.o.database}/{self.storage(name)}'"
            return f"Replicated{base}({path}, '{{replica}}'{', ' + args if args else ''})"
        return f"{base}({args})" if args else base

    def dedup_setting(self) -> str:
        return "" if self.o.cluster else f"non_replicated_deduplication_window = {DEDUP_WINDOW}"

    def ttl(self) -> str:
        return f"\nTTL {self.ttl_expr()}" if self.o.ttl_days else ""

    def ttl_expr(self) -> str:
        return f"toDateTime(ts_start) + INTERVAL {self.o.ttl_days} DAY"

    def table(self, name: str, columns, order_by: str, partition_by: str | None, kind: str = "MergeTree",
              ttl: bool | str = True, sharding_key: str | None = None, indexes: tuple[str, ...] = ()) -> list[str]:
        """``ttl``: the table's TTL (``True``: ``ttl_days`` after ``ts_start``; a string: that TTL
        clause's expression). ``indexes``: ``INDEX …`` definitions in the column list."""
        cols = ",\n".join([f"    {_q(c)} {t}" for c, t in columns] + [f"    {i}" for i in indexes])
        settings = self.dedup_setting()
        parts = [f"CREATE TABLE IF NOT EXISTS {self.db}.{_q(self.storage(name))}{self.on_cluster}\n(\n{cols}\n)",
                 f"ENGINE = {self.engine(kind, name)}"]
        if partition_by:
            parts.append(f"PARTITION BY {partition_by}")
        parts.append(f"ORDER BY {order_by}")
        text = "\n".join(parts) + (f"\nTTL {ttl}" if isinstance(ttl, str) else self.ttl() if ttl else "")
        if settings:
            text += f"\nSETTINGS {settings}"
        out = [text]
        if self.o.cluster:
            has_id = any(c == "request_id" for c, _ in columns)
            out.append(self.distributed(name, sharding_key or ("cityHash64(request_id)" if has_id else "rand()")))
        return out

    def add_column(self, name: str, column: str, ctype: str, after: str) -> list[str]:
        """``ALTER TABLE … ADD COLUMN IF NOT EXISTS`` on ``name`` (and its local table on a cluster)."""
        tables = [self.storage(name), name] if self.o.cluster else [name]
        return [f"ALTER TABLE {self.db}.{_q(t)}{self.on_cluster} ADD COLUMN IF NOT EXISTS {_q(column)} {ctype} "
                f"AFTER {_q(after)}" for t in tables]

    def add_index(self, name: str, index: str, expr: str, kind: str, granularity: int = 1) -> list[str]:
        """``ALTER TABLE … ADD INDEX IF NOT EXISTS`` on the table storing ``name`` (a data-skipping
        index; parts written before it get it when they merge)."""
        return [f"ALTER TABLE {self.db}.{_q(self.storage(name))}{self.on_cluster} ADD INDEX IF NOT EXISTS "
                f"{_q(index)} {expr} TYPE {kind} GRANULARITY {granularity}"]

    def materialize_index(self, name: str, index: str) -> list[str]:
        """``ALTER TABLE … MATERIALIZE INDEX``: build ``index`` for the parts written before it
        (a mutation: it runs in the background, the statement returns at once)."""
        return [f"ALTER TABLE {self.db}.{_q(self.storage(name))}{self.on_cluster} MATERIALIZE INDEX {_q(index)}"]

    def modify_column(self, name: str, column: str, ctype: str) -> list[str]:
        """``ALTER TABLE … MODIFY COLUMN`` on the table storing ``name`` (a codec change: new
        parts are written with it, older ones as they merge; the values are not touched)."""
        return [f"ALTER TABLE {self.db}.{_q(self.storage(name))}{self.on_cluster} MODIFY COLUMN {_q(column)} {ctype}"]

    def distributed(self, name: str, sharding_key: str) -> str:
        assert self.o.cluster is not None  # Distributed tables exist only on a cluster
        return (f"CREATE TABLE IF NOT EXISTS {self.db}.{_q(name)}{self.on_cluster} "
                f"AS {self.db}.{_q(self.storage(name))}\n"
                f"ENGINE = Distributed({_q(self.o.cluster)}, {self.db}, {_q(self.storage(name))}, {sharding_key})")


_ROLLUP_V2 = (
    ("minute", "DateTime('UTC')"),
    ("tenant", "LowCardinality(String)"),
    ("model", "LowCardinality(String)"),
    ("backend", "LowCardinality(String)"),
    ("requests", "AggregateFunction(count)"),
    ("errors", "AggregateFunction(sum, UInt64)"),
    ("latency_ms", f"AggregateFunction(quantilesTDigest({QUANTILES}), Float64)"),
    ("ttft_ms", f"AggregateFunction(quantilesTDigestIf({QUANTILES}), Float64, UInt8)"),
    ("prompt_tokens", "AggregateFunction(sum, UInt64)"),
    ("completion_tokens", "AggregateFunction(sum, UInt64)"),
    ("cost_usd", "AggregateFunction(sum, Float64)"),
)
# Added by migration 6: error classes and latency over the same population as TTFT.
_ROLLUP_V6 = (
    ("client_errors", "AggregateFunction(sum, UInt64)"),
    ("ok_latency_ms", f"AggregateFunction(quantilesTDigestIf({QUANTILES}), Float64, UInt8)"),
    ("ok_ttft_ms", f"AggregateFunction(quantilesTDigestIf({QUANTILES}), Float64, UInt8)"),
    ("requests_v6", "AggregateFunction(count)"),
)
ROLLUP_COLUMNS = _ROLLUP_V2 + _ROLLUP_V6


def _rollup_select(r: _Renderer, v6: bool) -> str:
    """The rollup view's query (``v6``: with the columns migration 6 added)."""
    extra = ""
    if v6:  # the source columns through the table alias: ``latency_ms`` alone is the state above
        extra = ("    sumState(toUInt64(r.status_code >= 400 AND r.status_code < 500)) AS client_errors,\n"
                 f"    quantilesTDigestIfState({QUANTILES})(r.latency_ms, r.status_code < 400) AS ok_latency_ms,\n"
                 f"    quantilesTDigestIfState({QUANTILES})(ifNull(r.ttft_ms, 0), "
                 "r.ttft_ms IS NOT NULL AND r.status_code < 400) AS ok_ttft_ms,\n"
                 "    countState() AS requests_v6,\n")
    return ("SELECT toStartOfMinute(ts_start) AS minute, tenant, model_requested AS model, backend,\n"
            "    countState() AS requests,\n"
            "    sumState(toUInt64(status_code >= 400)) AS errors,\n"
            f"    quantilesTDigestState({QUANTILES})(latency_ms) AS latency_ms,\n"
            f"    quantilesTDigestIfState({QUANTILES})(ifNull(ttft_ms, 0), ttft_ms IS NOT NULL) AS ttft_ms,\n"
            "    sumState(toUInt64(prompt_tokens)) AS prompt_tokens,\n"
            "    sumState(toUInt64(completion_tokens)) AS completion_tokens,\n"
            "    sumState(ifNull(cost_usd, 0)) AS cost_usd"
            + (",\n" + extra.rstrip(",\n") if extra else "") + "\n"
            f"FROM {r.db}.{_q(r.storage('llm_requests'))}{' AS r' if v6 else ''}\n"
            "GROUP BY minute, tenant, model, backend")


def _migrations(r: _Renderer) -> list[Migration]:
    db, oc = r.db, r.on_cluster
    rollup_mv = (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.`llm_requests_1m_mv`{oc} "
        f"TO {db}.{_q(r.storage('llm_requests_1m'))} AS\n" + _rollup_select(r, v6=False))
    rollup_v6 = [stmt for (name, ctype), (after, _) in zip(_ROLLUP_V6, (_ROLLUP_V2[-1], *_ROLLUP_V6))
                 for stmt in r.add_column("llm_requests_1m", name, ctype, after)]
    # MODIFY QUERY swaps the view's query in place: no insert goes unrolled, and re-running it
    # is harmless.
    rollup_v6.append(f"ALTER TABLE {db}.`llm_requests_1m_mv`{oc} MODIFY QUERY\n" + _rollup_select(r, v6=True))
    return [
        Migration(1, "requests and attempts", tuple(
            r.table("llm_requests", REQUEST_COLUMNS, "(tenant, model_requested, ts_start)", "toYYYYMM(ts_start)")
            + r.table("llm_attempts", ATTEMPT_COLUMNS, "(backend, ts_start)", "toYYYYMM(ts_start)"))),
        Migration(2, "per-minute rollups", tuple(
            r.table("llm_requests_1m", _ROLLUP_V2, "(tenant, model, backend, minute)", "toYYYYMM(minute)",
                    kind="AggregatingMergeTree", ttl=False)
            + [rollup_mv])),
        Migration(3, "prompt versions, feedback, experiment arm", tuple(
            r.table(PROMPT_VERSIONS, PROMPT_VERSION_COLUMNS, "(name, version)", None, kind="ReplacingMergeTree",
                    ttl=False, sharding_key="cityHash64(name, version)")
            + r.table(FEEDBACK, FEEDBACK_COLUMNS, "(request_id, ts)", "toYYYYMM(ts)", ttl=False)
            + r.add_column("llm_requests", "experiment_arm", "LowCardinality(String)", "prompt_label"))),
        Migration(4, "routing provenance, cache time saved", tuple(
            r.add_column("llm_requests", "strategy", "LowCardinality(String)", "route_rule")
            + r.add_column("llm_requests", "route_candidates", "String", "strategy")
            + r.add_column("llm_requests", "cache_saved_ms", "Nullable(Float64)", "cache_status"))),
        Migration(5, "sessions: session id, parent request id", tuple(
            r.add_column("llm_requests", "session_id", "String", "client_request_id")
            + r.add_column("llm_requests", "parent_request_id", "String", "session_id"))),
        Migration(6, "rollup: client errors, latency and TTFT of successful requests", tuple(rollup_v6)),
        # /v1/feedback looks a request up by its id or the client's: without these it scans the table.
        Migration(7, "request id look-ups", tuple(
            r.add_index("llm_requests", "idx_request_id", "request_id", "bloom_filter(0.001)")
            + r.add_index("llm_requests", "idx_client_request_id", "client_request_id", "bloom_filter(0.001)"))),
        Migration(8, "cache-write tokens, session/trace/attempt look-ups, timestamp codecs", tuple(_v8(r))),
        Migration(9, "row flags: repaired and stand-in rows", tuple(
            r.add_column("llm_requests", "row_flags", "Array(LowCardinality(String))", "truncated"))),
        Migration(10, "audio duration", tuple(
            r.add_column("llm_requests", "audio_seconds", "Nullable(Float64)", "reasoning_tokens"))),
        Migration(11, "evaluation runs and scores", tuple(
            r.table(EVAL_RUNS, EVAL_RUN_COLUMNS, "run_id", None, kind="ReplacingMergeTree(version)", ttl=False,
                    sharding_key="cityHash64(run_id)")
            + r.table(EVAL_SCORES, EVAL_SCORE_COLUMNS, "(run_id, candidate, scorer, item)", "toYYYYMM(ts)",
                      ttl=False, sharding_key="cityHash64(run_id)"))),
        Migration(12, "bias monitoring: refusal flag, feedback rater", tuple(
            r.add_column("llm_requests", "refusal", "Bool", "finish_reason")
            + r.add_column(FEEDBACK, "rater", "String", "api_key_id"))),
        Migration(13, "LoRA adapter served", tuple(
            r.add_column("llm_requests", "adapter", "LowCardinality(String)", "model_served")
            + r.add_column("llm_requests", "adapter_version", "Nullable(UInt32)", "adapter"))),
        Migration(14, "retrieval collections, semantic cache hits, chunks a chain used", tuple(
            r.table(COLLECTIONS, COLLECTION_COLUMNS, "name", None, kind="ReplacingMergeTree(version)", ttl=False,
                    sharding_key="cityHash64(name)")
            + r.add_column("llm_requests", "cache_distance", "Nullable(Float32)", "cache_saved_ms")
            + r.add_column("llm_requests", "cache_entry_id", "String", "cache_distance")
            + r.add_column("llm_requests", "retrieved_chunks", "Array(String)", "parent_request_id")
            + r.add_column("llm_requests", "retrieved_distances", "Array(Float32)", "retrieved_chunks"))),
    ]


# The look-up indexes, as (table, index, column): the dashboard's request detail (by request_id
# or client_request_id, then the attempts by request_id), /v1/feedback, `sessions show`
# (session_id) and a trace's rows (trace_id) each read a few granules instead of the table.
_INDEXES = (("llm_requests", "idx_request_id", "request_id"),
            ("llm_requests", "idx_client_request_id", "client_request_id"),
            ("llm_requests", "idx_session_id", "session_id"),
            ("llm_requests", "idx_trace_id", "trace_id"),
            ("llm_attempts", "idx_request_id", "request_id"))
_TIMESTAMP_TABLES = ((REQUEST_COLUMNS, "llm_requests"), (ATTEMPT_COLUMNS, "llm_attempts"),
                     (PROMPT_VERSION_COLUMNS, PROMPT_VERSIONS), (FEEDBACK_COLUMNS, FEEDBACK))


def _v8(r: _Renderer) -> list[str]:
    out = r.add_column("llm_requests", "cache_write_tokens", "Nullable(UInt32)", "cached_tokens")
    for table, index, column in _INDEXES[2:]:
        out += r.add_index(table, index, column, "bloom_filter(0.001)")
    # Version 7 left older parts to get its indexes as they merge (big old parts rarely do).
    for table, index, _ in _INDEXES:
        out += r.materialize_index(table, index)
    # Tables created before version 8 store timestamps uncompressed by delta.
    for columns, table in _TIMESTAMP_TABLES:
        out += [stmt for column, ctype in columns if ctype == TIMESTAMP
                for stmt in r.modify_column(table, column, ctype)]
    return out


def render(opts: SchemaOptions) -> tuple[list[str], list[Migration]]:
    """``(bootstrap, migrations)``: the statements that create the database and the
    ``schema_migrations`` table, and the versioned migrations, as DDL text for ``opts``."""
    r = _Renderer(opts)
    bootstrap = [f"CREATE DATABASE IF NOT EXISTS {r.db}{r.on_cluster}"]
    bootstrap += r.table("schema_migrations", (("version", "UInt32"), ("name", "String"),
                                               ("applied_at", "DateTime64(3, 'UTC')")),
                         "version", None, kind="ReplacingMergeTree", ttl=False)
    return bootstrap, _migrations(r)


def table_statements(opts: SchemaOptions, name: str, columns, order_by: str, *, kind: str = "MergeTree",
                     ttl: str | None = None, indexes: tuple[str, ...] = (),
                     sharding_key: str | None = None) -> list[str]:
    """The statements that create table ``name`` (with its ``Distributed`` front on a
    cluster) outside the versioned migrations: the vector tables, made per embedding length."""
    return _Renderer(opts).table(name, columns, order_by, None, kind=kind, ttl=ttl if ttl else False,
                                 sharding_key=sharding_key, indexes=indexes)


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ddl_script(opts: SchemaOptions) -> str:
    """All DDL as one script (for review, or to apply by hand with ``clickhouse-client -n``)."""
    bootstrap, migrations = render(opts)
    parts = list(bootstrap)
    for m in migrations:
        parts.extend(m.statements)
    return ";\n\n".join(parts) + ";\n"


def apply_migrations(command: Callable[[str], object], query_versions: Callable[[], set[int]],
                     opts: SchemaOptions) -> list[int]:
    """Bring the schema up to date; returns the versions applied now.

    ``command(sql)`` runs one statement; ``query_versions()`` returns the applied versions (read
    from ``schema_migrations``). Every statement is ``IF NOT EXISTS``, so concurrent gateways
    starting together, or a migration interrupted half-way, are harmless: it is re-run whole.
    """
    bootstrap, migrations = render(opts)
    for stmt in bootstrap:
        command(stmt)
    done = query_versions()
    applied = []
    for m in migrations:
        if m.version in done:
            continue
        for stmt in m.statements:
            command(stmt)
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        command(f"INSERT INTO {_q(opts.database)}.`schema_migrations` (version, name, applied_at) "
                f"VALUES ({m.version}, {_literal(m.name)}, '{ts}')")
        applied.append(m.version)
    return applied
