"""Pydantic models for the ``telemetry:`` and ``pricing:`` sections of ``gateway.yaml``.

Kept apart from ``models.py`` so telemetry settings evolve without touching the core models;
``GatewayConfig`` embeds them. Like every config model they forbid unknown keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Process-wide default for where embedded data lives (chDB directory, spool), when the config
# does not say. ``llm-gateway serve/demo --data-dir`` sets it too.
DATA_DIR_ENV = "LLM_GATEWAY_DATA_DIR"
DEFAULT_DATA_DIR = "./.llm-gateway"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClickHouseSettings(_Strict):
    """Where rows go.

    ``dsn``: ``http(s)://user:pass@host:8123/db`` for a ClickHouse server or cluster (through
    clickhouse-connect's HTTP client), or ``chdb:///abs/dir`` / ``chdb://./rel/dir`` for the
    embedded engine. Unset: embedded chDB at ``<data_dir>/clickhouse``. The DSN may hold a
    password; it is never logged or shown unredacted.
    ``database``: database of the tables (created when missing); unset: the DSN's path, else
    ``default``. ``cluster``: emit ``ON CLUSTER`` DDL with ``Replicated*`` engines and a
    ``Distributed`` front table per table. ``ttl_days``: drop rows older than this (none by
    default). ``async_insert``: server-side async inserts (waits for the flush, deduplicated).
    ``compression``: compress HTTP insert bodies (lz4). Timeouts are in seconds.
    ``insert_settings``: extra ClickHouse settings sent with every insert.
    """

    dsn: str | None = Field(None, repr=False)
    database: str | None = None
    cluster: str | None = None
    ttl_days: int | None = Field(None, ge=1)
    async_insert: bool = False
    compression: bool = True
    connect_timeout_s: float = Field(5.0, gt=0)
    send_receive_timeout_s: float = Field(30.0, gt=0)
    insert_settings: dict[str, str | int | float] = Field(default_factory=dict)

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
    """Optional request/response bodies in the row (off by default).

    ``request`` / ``response``: log them. ``max_bytes``: cap per body (UTF-8 bytes; longer bodies
    are cut). ``redact``: ``"module:function"`` called as ``function(kind, text) -> text`` with
    ``kind`` ``"request"`` or ``"response"`` before the cap is applied (e.g. to mask e-mail
    addresses). Columns use the ZSTD codec.
    """

    request: bool = False
    response: bool = False
    max_bytes: int = Field(64 * 1024, ge=0)
    redact: str | None = None


class QueryLane(_Strict):
    """One lane of ops queries: at most ``concurrency`` of its queries run at once; a query
    waits at most ``queue_wait_s`` seconds for a free slot, then is answered 503 ``busy``."""

    concurrency: int = Field(2, ge=1, le=64)
    queue_wait_s: float = Field(2.0, ge=0, le=600)


class QuerySettings(_Strict):
    """Limits on ops queries (``/admin/query``, the dashboard, feedback look-ups, and the CLI's
    ``query``/``sessions``/``dataset``/``drift`` commands), applied as ClickHouse settings that
    the read-only session cannot change.

    ``max_execution_time_s``: seconds a query may run. ``max_memory_usage``: bytes one query may
    allocate (0: no limit). ``max_rows_to_read`` / ``max_bytes_to_read``: what one query may
    scan (0: no limit). ``max_threads``: threads one query may use. ``max_result_rows`` /
    ``result_overflow_mode``: rows in an answer; ``break`` cuts the answer (at a block
    boundary), ``throw`` fails the query. ``settings``: any further ClickHouse settings.
    ``adhoc`` / ``dashboard`` / ``lookups``: the lanes of ad-hoc SQL (``/admin/query``), of the
    dashboard's panels, and of ``/v1/feedback``'s request look-ups: each has its own slots, so a
    long ad-hoc query never holds up a panel.
    """

    max_execution_time_s: float = Field(60.0, gt=0)
    max_memory_usage: int = Field(1 << 30, ge=0)
    max_rows_to_read: int = Field(1_000_000_000, ge=0)
    max_bytes_to_read: int = Field(100 << 30, ge=0)
    max_threads: int = Field(2, ge=1, le=256)
    max_result_rows: int = Field(100_000, ge=0)
    result_overflow_mode: Literal["break", "throw"] = "break"
    settings: dict[str, str | int | float] = Field(default_factory=dict)
    adhoc: QueryLane = QueryLane(concurrency=2, queue_wait_s=2.0)
    dashboard: QueryLane = QueryLane(concurrency=2, queue_wait_s=15.0)
    lookups: QueryLane = QueryLane(concurrency=2, queue_wait_s=2.0)

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


class TelemetrySettings(_Strict):
    """One row per request into ClickHouse, through a non-blocking queue, a writer thread and a
    disk spool for when the store is down.

    ``enabled``: off means no sink at all. ``data_dir``: where embedded data lives (default
    ``$LLM_GATEWAY_DATA_DIR`` or ``./.llm-gateway``). ``batch_rows`` / ``flush_interval_ms``:
    the writer inserts when either is reached. ``queue_max``: in-memory rows before new rows
    spill straight to the spool. ``spool_dir``: default ``<data_dir>/spool``.
    ``retry_initial_ms`` / ``retry_max_ms``: exponential backoff between store retries.
    ``shutdown_timeout_s``: how long shutdown may spend flushing before it spools the rest.
    ``error_message_max``: characters of ``error_message`` kept. ``queries_dir``: extra folder
    of saved ``*.sql`` queries, searched before ``./config/queries`` and the shipped ones.
    ``queries``: limits and lanes of ops queries (``QuerySettings``).
    """

    enabled: bool = True
    data_dir: str | None = None
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    batch_rows: int = Field(1000, ge=1, le=1_000_000)
    flush_interval_ms: int = Field(1000, ge=10)
    queue_max: int = Field(20_000, ge=1)
    spool_dir: str | None = None
    retry_initial_ms: int = Field(500, ge=1)
    retry_max_ms: int = Field(30_000, ge=1)
    shutdown_timeout_s: float = Field(10.0, ge=0)
    error_message_max: int = Field(1000, ge=0)
    bodies: BodyLogging = BodyLogging()
    queries_dir: str | None = None
    queries: QuerySettings = QuerySettings()

    def resolved_data_dir(self, override: str | None = None) -> Path:
        """``override`` (CLI), else ``data_dir``, else ``$LLM_GATEWAY_DATA_DIR``, else ``./.llm-gateway``."""
        return Path(override or self.data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).absolute()

    def resolved_dsn(self, data_dir: Path) -> str:
        """The configured DSN, or the embedded default ``chdb://<data_dir>/clickhouse``."""
        return self.clickhouse.dsn or f"chdb://{data_dir / 'clickhouse'}"

    def resolved_spool_dir(self, data_dir: Path) -> Path:
        """The spool folder: ``spool_dir`` or ``<data_dir>/spool``."""
        return Path(self.spool_dir).absolute() if self.spool_dir else data_dir / "spool"


class PriceEntry(_Strict):
    """USD per 1M tokens: ``input`` (prompt), ``output`` (completion), ``cached_input``
    (cached prompt tokens; defaults to ``input``)."""

    input: float = Field(ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)


class PricingSettings(_Strict):
    """Per-model prices for ``cost_usd``.

    ``models``: name → prices; a name also matches dated variants (``gpt-4o`` prices
    ``gpt-4o-2024-08-06``; the longest matching name wins). ``defaults``: start from the
    shipped table of common OpenAI and Anthropic models (entries here override it).
    Unknown models get ``cost_usd = NULL``, never 0.
    """

    defaults: bool = True
    models: dict[str, PriceEntry] = Field(default_factory=dict)


__all__ = ["BodyLogging", "ClickHouseSettings", "DATA_DIR_ENV", "DEFAULT_DATA_DIR", "PriceEntry",
           "PricingSettings", "QueryLane", "QuerySettings", "TelemetrySettings"]
