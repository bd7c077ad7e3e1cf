"""Pydantic models for the ``telemetry:`` and ``pricing:`` sections of ``gateway.yaml``.

Kept apart from ``models.py`` so telemetry settings evolve without touching the core models;
``GatewayConfig`` embeds them. Like every config model they forbid unknown keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config import environment

# Process-wide default for where embedded data lives (chDB directory, spool), when the config
# does not say. ``llm-gateway serve/demo --data-dir`` sets it too.
DATA_DIR_ENV = environment.DATA_DIR
DEFAULT_DATA_DIR = "./.llm-gateway"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClickHouseSettings(_Strict):
    """Where rows go: a ClickHouse server or cluster (HTTP), or the embedded chDB engine."""

    dsn: str | None = Field(None, repr=False, description=(
        "http(s)://user:pass@host:8123/db for a ClickHouse server, or chdb:///abs/dir for the embedded engine "
        "(default: chDB in <data_dir>/clickhouse); never logged unredacted"))
    database: str | None = Field(None, description=(
        "database of the tables, created when missing (default: the DSN's path, else default)"))
    cluster: str | None = Field(None, description=(
        "emit ON CLUSTER DDL with Replicated engines and a Distributed table per table"))
    ttl_days: int | None = Field(None, ge=1, description="drop rows older than this (default: keep them)")
    async_insert: bool = Field(False, description="server-side async inserts (waits for the flush; deduplicated)")
    compression: bool = Field(True, description="compress HTTP insert bodies (lz4)")
    connect_timeout_s: float = Field(5.0, gt=0, description="seconds to connect to the server")
    send_receive_timeout_s: float = Field(30.0, gt=0, description="seconds to send an insert or read an answer")
    insert_settings: dict[str, str | int | float] = Field(default_factory=dict, description=(
        "extra ClickHouse settings sent with every insert"))

    @field_validator("dsn")
    @classmethod
    def _dsn_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "chdb://")):
            raise ValueError("dsn must start with http://, https:// or chdb://")
        return value or None

    @field_validator("database", "cluster")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and (not value or not value.replace("_", "a").isalnum()):
            raise ValueError(f"{value!r} is not a plain identifier (letters, digits, _)")
        return value


class BodyLogging(_Strict):
    """Optional request/response bodies in the row (off by default; columns use the ZSTD codec)."""

    request: bool = Field(False, description="log request bodies in the row")
    response: bool = Field(False, description="log response bodies in the row")
    max_bytes: int = Field(64 * 1024, ge=0, description="cap per body in UTF-8 bytes (longer bodies are cut)")
    redact: str | None = Field(None, description=(
        "module:function called as function(kind, text) -> text before the cap (kind: request or response)"))


class QueryLane(_Strict):
    """One lane of ops queries: at most ``concurrency`` of its queries run at once; a query
    waits at most ``queue_wait_s`` seconds for a free slot, then is answered 503 ``busy``.
    """

    concurrency: int = Field(2, ge=1, le=64, description="queries of this lane that run at once")
    queue_wait_s: float = Field(2.0, ge=0, le=600, description="longest wait for a free slot; then 503 busy")


class QuerySettings(_Strict):
    """Limits on ops queries (``/admin/query``, the dashboard, feedback look-ups, and the CLI's
    ``query``/``sessions``/``dataset``/``drift`` commands), applied as ClickHouse settings that
    the read-only session cannot change. Each lane has its own slots, so a long ad-hoc query
    never holds up a dashboard panel.
    """

    max_execution_time_s: float = Field(60.0, gt=0, description="seconds a query may run")
    max_memory_usage: int = Field(1 << 30, ge=0, description="bytes one query may allocate (0: no limit)")
    max_rows_to_read: int = Field(1_000_000_000, ge=0, description="rows one query may scan (0: no limit)")
    max_bytes_to_read: int = Field(100 << 30, ge=0, description="bytes one query may scan (0: no limit)")
    max_threads: int = Field(2, ge=1, le=256, description="threads one query may use")
    max_result_rows: int = Field(100_000, ge=0, description="rows in one answer (0: no limit)")
    result_overflow_mode: Literal["break", "throw"] = Field("break", description=(
        "past max_result_rows: break cuts the answer (at a block boundary), throw fails the query"))
    settings: dict[str, str | int | float] = Field(default_factory=dict, description=(
        "further ClickHouse settings for every ops query (readonly excepted)"))
    adhoc: QueryLane = Field(QueryLane(concurrency=2, queue_wait_s=2.0), description=(
        "the lane of ad-hoc SQL (/admin/query, llm-gateway query)"))
    dashboard: QueryLane = Field(QueryLane(concurrency=2, queue_wait_s=15.0), description=(
        "the lane of the dashboard's panels"))
    lookups: QueryLane = Field(QueryLane(concurrency=2, queue_wait_s=2.0), description=(
        "the lane of /v1/feedback's request look-ups"))
    vectors: QueryLane = Field(QueryLane(concurrency=8, queue_wait_s=0.1), description=(
        "the lane of vector searches: semantic-cache look-ups (a busy lane is a cache miss) and "
        "collection searches"))

    @field_validator("settings")
    @classmethod
    def _setting_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not name.replace("_", "a").isalnum() or name.lower() == "readonly":
                raise ValueError(f"{name!r} is not a ClickHouse setting name this section may set")
        return value

    def clickhouse_settings(self) -> dict[str, Any]:
        """The limits as ClickHouse settings (``readonly`` is added by the client, last)."""
        t = self.max_execution_time_s
        out: dict[str, Any] = {
            "max_execution_time": int(t) if float(t).is_integer() else t,
            "max_memory_usage": self.max_memory_usage,
            "max_rows_to_read": self.max_rows_to_read,
            "max_bytes_to_read": self.max_bytes_to_read,
            "max_threads": self.max_threads,
            "max_result_rows": self.max_result_rows,
            "result_overflow_mode": self.result_overflow_mode,
        }
        out.update(self.settings)
        return out


class LogSettings(_Strict):
    """The durable request log: the serving process appends one record per request to
    append-only segment files under ``dir``; the ingester reads them into the store and
    deletes what it has inserted. Bounded on disk; see docs/telemetry.md for what survives a
    process kill or a power loss under each ``fsync`` policy.
    """

    dir: str | None = Field(None, description="the log's root folder, shared by every writer (default <data_dir>/log)")
    fsync: Literal["never", "interval", "always"] = Field("interval", description=(
        "never: the page cache only (survives a process kill); interval: fsync every fsync_interval_ms "
        "from a background thread; always: fsync before append returns (slow)"))
    fsync_interval_ms: int = Field(100, ge=1, le=60_000, description="how often the interval policy fsyncs (ms)")
    segment_bytes: int = Field(16 << 20, ge=4096, description=(
        "a segment is closed when the next record would take it past this size…"))
    segment_age_s: float = Field(10.0, gt=0, description=(
        "…or this many seconds after its first record, so the ingester can delete it soon"))
    max_bytes: int = Field(1 << 30, ge=4096, description=(
        "bound on the segments of all writers under dir together; past it, when_full applies"))
    when_full: Literal["serve", "reject"] = Field("serve", description=(
        "serve: keep serving, drop and count the records that do not fit; reject: answer 503 "
        "while the log is full or cannot be written"))
    lag_degraded_s: float = Field(30.0, gt=0, description=(
        "/readyz reports degraded when the oldest record not yet ingested is older than this (s)"))

    def resolved_dir(self, data_dir: Path) -> Path:
        """The log root: ``dir`` or ``<data_dir>/log``."""
        return Path(self.dir).absolute() if self.dir else data_dir / "log"


class TelemetrySettings(_Strict):
    """One row per request into ClickHouse. The serving process appends each request's record
    to a durable log on local disk; the ingester (a process of its own) builds the rows and
    inserts them, retrying while the store is down.
    """

    enabled: bool = Field(True, description=(
        "write a row per request (LLM_GATEWAY_TELEMETRY=off overrides); false: no log, no ingester"))
    data_dir: str | None = Field(None, description=(
        "where local data lives: request log, embedded chDB store (default $LLM_GATEWAY_DATA_DIR or ./.llm-gateway)"))
    clickhouse: ClickHouseSettings = Field(ClickHouseSettings(), description="where rows go")
    ingester: Literal["supervised", "external"] = Field("supervised", description=(
        "supervised: serve starts and restarts the ingester process itself; external: you run "
        "`llm-gateway ingest` (same config and data folder) where you want it"))
    batch_rows: int = Field(1000, ge=1, le=1_000_000, description=(
        "the ingester inserts at most this many records at once…"))
    flush_interval_ms: int = Field(1000, ge=10, description=(
        "…and, when fewer wait, looks for more this often (ms): the delay before a row is queryable"))
    retry_initial_ms: int = Field(500, ge=1, description=(
        "first wait before retrying the store, doubled up to retry_max_ms"))
    retry_max_ms: int = Field(30_000, ge=1, description="longest wait between store retries")
    shutdown_timeout_s: float = Field(10.0, ge=0, description=(
        "how long the ingester may spend on its last batch when stopped (the rest waits in the log)"))
    error_message_max: int = Field(1000, ge=0, description="characters of error_message kept in a row")
    bodies: BodyLogging = Field(BodyLogging(), description=(
        "request and response bodies in the row (off by default)"))
    queries_dir: str | None = Field(None, description=(
        "a folder of saved *.sql queries, searched before ./config/queries and the shipped ones"))
    queries: QuerySettings = Field(QuerySettings(), description="limits and lanes of ops queries")
    log: LogSettings = Field(LogSettings(), description="the durable request log on local disk")

    def resolved_data_dir(self, override: str | None = None) -> Path:
        """``override`` (CLI), else ``data_dir``, else ``$LLM_GATEWAY_DATA_DIR``, else ``./.llm-gateway``."""
        return Path(override or self.data_dir or environment.read(DATA_DIR_ENV) or DEFAULT_DATA_DIR).absolute()

    def resolved_dsn(self, data_dir: Path) -> str:
        """The configured DSN, or the embedded default ``chdb://<data_dir>/clickhouse``."""
        return self.clickhouse.dsn or f"chdb://{data_dir / 'clickhouse'}"


class PriceEntry(_Strict):
    """Prices in USD per 1M tokens (``audio_minute``: per minute of input audio). A kind of usage
    reported without its rate (audio tokens without ``input_audio``, a duration without
    ``audio_minute``, prompt tokens without ``input``) makes the request's cost unknown (NULL)."""

    input: float | None = Field(None, ge=0, description=(
        "USD per 1M prompt tokens (text); may be unset only with audio_minute (a model billed by the minute)"))
    output: float = Field(0.0, ge=0, description="USD per 1M completion tokens (text; an image model's image output)")
    cached_input: float | None = Field(None, ge=0, description="USD per 1M cached prompt tokens (default: input)")
    cache_write: float | None = Field(None, ge=0, description=(
        "USD per 1M prompt tokens written to the provider's prompt cache (Anthropic's cache creation; "
        "default: input)"))
    input_audio: float | None = Field(None, ge=0, description=(
        "USD per 1M audio prompt tokens (chat audio input, transcription; no default: unset, they make the cost "
        "NULL)"))
    input_image: float | None = Field(None, ge=0, description=(
        "USD per 1M image prompt tokens (image generation and edits; default: input, as chat models bill images)"))
    output_audio: float | None = Field(None, ge=0, description=(
        "USD per 1M audio completion tokens (chat audio output; no default: unset, they make the cost NULL)"))
    audio_minute: float | None = Field(None, ge=0, description=(
        "USD per minute of input audio, for models billed by duration (whisper-1; the answer's usage "
        "`{type: duration, seconds}`)"))

    @model_validator(mode="after")
    def _some_rate(self) -> PriceEntry:
        if self.input is None and self.audio_minute is None:
            raise ValueError("a price needs `input` (USD per 1M prompt tokens) or `audio_minute`")
        return self


class PricingSettings(_Strict):
    """Per-model prices for ``cost_usd`` (``gpt-4o`` also prices ``gpt-4o-2024-08-06``).
    A name priced here wins over the shipped table for every name a request goes by (served,
    upstream, public). Unknown models get ``cost_usd = NULL``, never 0.
    """

    defaults: bool = Field(True, description=(
        "start from the shipped table of common OpenAI and Anthropic models (entries in models override it)"))
    models: dict[str, PriceEntry] = Field(default_factory=dict, description=(
        "model name → prices; a name also prices its dated variants (the longest matching name wins)"))


__all__ = ["BodyLogging", "ClickHouseSettings", "DATA_DIR_ENV", "DEFAULT_DATA_DIR", "LogSettings", "PriceEntry",
           "PricingSettings", "QueryLane", "QuerySettings", "TelemetrySettings"]
