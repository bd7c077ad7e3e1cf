"""The catalogue of telemetry columns: every ``llm_requests`` and ``llm_attempts`` column with its
ClickHouse type, in row order. The DDL (``schema.py``) is generated from it and ``RowBuilder``
fills rows in this order, so a column is added here once."""

from __future__ import annotations

REQUEST_COLUMNS: tuple[tuple[str, str], ...] = (
    # identity
    ("request_id", "UUID"),
    ("ts_start", "DateTime64(3, 'UTC')"),
    ("ts_end", "DateTime64(3, 'UTC')"),
    ("trace_id", "String"),
    ("config_hash", "LowCardinality(String)"),
    ("instance", "LowCardinality(String)"),
    # caller
    ("tenant", "LowCardinality(String)"),
    ("api_key_id", "String"),
    ("user", "String"),
    ("metadata", "Map(LowCardinality(String), String)"),
    ("client_ip", "String"),
    ("user_agent", "String"),
    ("client_request_id", "String"),
    ("session_id", "String"),  # x-gateway-session-id (a chain: its steps share the chain's)
    ("parent_request_id", "String"),  # x-gateway-parent-request-id as a UUID (a chain step: the chain's)
    # request
    ("endpoint", "LowCardinality(String)"),
    ("model_requested", "LowCardinality(String)"),
    ("stream", "Bool"),
    ("params", "String"),
    ("prompt_id", "LowCardinality(String)"),
    ("prompt_version", "Nullable(UInt32)"),
    ("prompt_label", "LowCardinality(String)"),
    ("experiment_arm", "LowCardinality(String)"),
    # route
    ("backend", "LowCardinality(String)"),
    ("provider", "LowCardinality(String)"),
    ("model_served", "LowCardinality(String)"),
    ("route_rule", "LowCardinality(String)"),
    ("strategy", "LowCardinality(String)"),
    ("route_candidates", "String"),  # JSON: [{"target", "score", "skipped"}] at decision time
    ("attempts", "UInt8"),
    ("cache_status", "LowCardinality(String)"),
    ("cache_saved_ms", "Nullable(Float64)"),  # a hit's original latency
    # outcome
    ("status_code", "UInt16"),
    ("error_type", "LowCardinality(String)"),
    ("error_message", "String"),
    ("finish_reason", "LowCardinality(String)"),
    ("truncated", "Bool"),
    # what was repaired on the way to the row (sanitized:<field>, truncated:<field>), or that the
    # row stands in for one that could not be built (fallback) or that the store refused (rejected)
    ("row_flags", "Array(LowCardinality(String))"),
    # tokens
    ("prompt_tokens", "UInt32"),
    ("completion_tokens", "UInt32"),
    ("total_tokens", "UInt32"),
    ("cached_tokens", "Nullable(UInt32)"),
    ("reasoning_tokens", "Nullable(UInt32)"),
    ("tokens_estimated", "UInt8"),
    # timing (ms)
    ("ttft_ms", "Nullable(Float64)"),
    ("latency_ms", "Float64"),
    ("upstream_latency_ms", "Nullable(Float64)"),
    ("gateway_overhead_ms", "Float64"),
    ("itl_p50_ms", "Nullable(Float64)"),
    ("itl_p95_ms", "Nullable(Float64)"),
    ("itl_max_ms", "Nullable(Float64)"),
    ("output_tokens_per_s", "Nullable(Float64)"),
    # cost
    ("cost_usd", "Nullable(Float64)"),
    # optional bodies
    ("request_body", "String CODEC(ZSTD(3))"),
    ("response_body", "String CODEC(ZSTD(3))"),
)

ATTEMPT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "UUID"),
    ("attempt", "UInt8"),
    ("ts_start", "DateTime64(3, 'UTC')"),
    ("tenant", "LowCardinality(String)"),
    ("model_requested", "LowCardinality(String)"),
    ("backend", "LowCardinality(String)"),
    ("provider", "LowCardinality(String)"),
    ("model", "LowCardinality(String)"),
    ("status_code", "UInt16"),
    ("error_type", "LowCardinality(String)"),
    ("latency_ms", "Float64"),
    ("ttft_ms", "Nullable(Float64)"),
    ("backoff_ms", "Float64"),
)

REQUEST_COLUMN_NAMES = tuple(name for name, _ in REQUEST_COLUMNS)
ATTEMPT_COLUMN_NAMES = tuple(name for name, _ in ATTEMPT_COLUMNS)
