"""The catalogue of every ClickHouse table's columns with their types, in row order.

Telemetry owns every table: ``llm_requests`` and ``llm_attempts`` (filled by ``RowBuilder`` in
this order), ``prompt_versions`` and ``llm_feedback`` (rows built by ``gateway.prompts``). The
DDL (``schema.py``) is generated from these, so a column is added here once.

- ``prompt_versions`` (ReplacingMergeTree, ``ORDER BY (name, version)``): one row per prompt
  version with its exact template source, so any request row's ``(prompt_id, prompt_version)``
  joins to the text that produced it. Re-inserts (every start) carry the same values.
- ``llm_feedback`` (MergeTree, ``ORDER BY (request_id, ts)``): one row per ``POST /v1/feedback``;
  joins to ``llm_requests`` on ``request_id``.
- ``llm_eval_runs`` (ReplacingMergeTree by ``run_id``, version ``finished``): one row when an
  ``llm-gateway eval run`` starts (status ``running``) and one when it ends, which replaces it;
  ``llm_eval_scores`` (MergeTree, ``ORDER BY (run_id, candidate, scorer, item)``): one row per
  (candidate, item, scorer), joinable to ``llm_requests`` on ``request_id`` (rows built by
  ``gateway.evals``).
- ``llm_collections`` (ReplacingMergeTree by ``name``, version ``version``): one row per
  retrieval collection (``gateway.retrieval``); its chunks live in a vector table per embedding
  length (``gateway.telemetry.vectors``), as do the semantic cache's entries.
"""

from __future__ import annotations

# Timestamps arrive nearly in order within a part, so deltas are small and ZSTD packs them
# (ClickHouse's own advice for time columns); the codec changes storage only, not values.
TIMESTAMP = "DateTime64(3, 'UTC') CODEC(Delta, ZSTD)"

REQUEST_COLUMNS: tuple[tuple[str, str], ...] = (
    # identity
    ("request_id", "UUID"),
    ("ts_start", TIMESTAMP),
    ("ts_end", TIMESTAMP),
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
    ("retrieved_chunks", "Array(String)"),  # a chain's retrieve steps: the chunk ids used, in order
    ("retrieved_distances", "Array(Float32)"),  # and their distances to the query
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
    ("adapter", "LowCardinality(String)"),  # the LoRA adapter (config `adapters:`) that answered, if one did
    ("adapter_version", "Nullable(UInt32)"),
    ("route_rule", "LowCardinality(String)"),
    ("strategy", "LowCardinality(String)"),
    ("route_candidates", "String"),  # JSON: [{"target", "score", "skipped"}] at decision time
    ("attempts", "UInt8"),
    ("cache_status", "LowCardinality(String)"),
    ("cache_saved_ms", "Nullable(Float64)"),  # a hit's original latency
    ("cache_distance", "Nullable(Float32)"),  # a semantic hit: its question's cosine distance to this one
    ("cache_entry_id", "String"),  # a semantic hit: the id of the entry served
    # outcome
    ("status_code", "UInt16"),
    ("error_type", "LowCardinality(String)"),
    ("error_message", "String"),
    ("finish_reason", "LowCardinality(String)"),
    ("refusal", "Bool"),  # the answer carried a refusal (message.refusal / delta.refusal)
    ("truncated", "Bool"),
    # what was repaired on the way to the row (sanitized:<field>, truncated:<field>), or that the
    # row stands in for one that could not be built (fallback) or that the store refused (rejected)
    ("row_flags", "Array(LowCardinality(String))"),
    # tokens
    ("prompt_tokens", "UInt32"),
    ("completion_tokens", "UInt32"),
    ("total_tokens", "UInt32"),
    ("cached_tokens", "Nullable(UInt32)"),  # cache reads (inside prompt_tokens)
    ("cache_write_tokens", "Nullable(UInt32)"),  # cache writes (Anthropic; inside prompt_tokens)
    ("reasoning_tokens", "Nullable(UInt32)"),
    ("audio_seconds", "Nullable(Float64)"),  # input audio's duration, as billed by it (whisper-1)
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
    ("ts_start", TIMESTAMP),
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

PROMPT_VERSIONS = "prompt_versions"
FEEDBACK = "llm_feedback"

PROMPT_VERSION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "LowCardinality(String)"),
    ("version", "UInt32"),
    ("content_hash", "String"),
    ("mode", "LowCardinality(String)"),
    ("messages", "String"),  # JSON array of {role, content (the Jinja2 template), name?}
    ("variables", "String"),  # JSON array of {name, type, required, default, description}
    ("params", "String"),  # JSON object of default request parameters
    ("note", "String"),
    ("source", "String"),  # the prompt file
    ("first_seen", TIMESTAMP),
)

FEEDBACK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("feedback_id", "UUID"),
    ("ts", TIMESTAMP),
    ("request_id", "UUID"),
    ("client_request_id", "String"),
    ("score", "Float64"),
    ("label", "LowCardinality(String)"),
    ("comment", "String"),
    ("tenant", "LowCardinality(String)"),
    ("api_key_id", "String"),
    ("rater", "String"),  # who gave the score (the feedback body's optional "rater")
)

EVAL_RUNS = "llm_eval_runs"
EVAL_SCORES = "llm_eval_scores"

EVAL_RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "String"),
    ("started", TIMESTAMP),
    ("finished", "Nullable(DateTime64(3, 'UTC'))"),  # NULL while it runs
    ("dataset", "String"),  # the file name (or the SQL) the items came from
    ("dataset_hash", "String"),  # SHA-256 of the items as read
    ("candidates", "Array(String)"),
    ("scorers", "Array(String)"),
    ("config", "String"),  # JSON: the run's options (concurrency, cache, judge, …)
    ("status", "LowCardinality(String)"),  # running | finished | failed
    ("items", "UInt32"),
    ("version", "UInt64"),  # ReplacingMergeTree version: the finishing row replaces the starting one
)

EVAL_SCORE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "String"),
    ("ts", TIMESTAMP),
    ("candidate", "LowCardinality(String)"),
    ("item", "UInt32"),  # the item's index in the dataset
    ("item_id", "String"),  # the item's own id, when it has one
    ("scorer", "LowCardinality(String)"),
    ("score", "Nullable(Float64)"),  # NULL: the scorer did not apply or the call failed
    ("reason", "String"),
    ("request_id", "String"),  # the candidate call's x-request-id (a row of llm_requests)
    ("latency_ms", "Float64"),
    ("cost_usd", "Nullable(Float64)"),
    ("error", "String"),
)

COLLECTIONS = "llm_collections"

COLLECTION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "String"),
    ("tenant", "LowCardinality(String)"),  # the owning tenant; "" = shared by every tenant
    ("embedding_model", "LowCardinality(String)"),  # the public model its chunks are embedded with
    ("dims", "UInt32"),  # the embeddings' length: the chunks live in llm_chunks_d<dims>
    ("chunk_size", "UInt32"),
    ("chunk_overlap", "UInt32"),
    ("description", "String"),
    ("created", TIMESTAMP),
    ("deleted", "Bool"),
    ("version", "UInt64"),  # ReplacingMergeTree version: the newest row of a name wins
)

REQUEST_COLUMN_NAMES = tuple(name for name, _ in REQUEST_COLUMNS)
ATTEMPT_COLUMN_NAMES = tuple(name for name, _ in ATTEMPT_COLUMNS)
PROMPT_VERSION_COLUMN_NAMES = tuple(name for name, _ in PROMPT_VERSION_COLUMNS)
FEEDBACK_COLUMN_NAMES = tuple(name for name, _ in FEEDBACK_COLUMNS)
EVAL_RUN_COLUMN_NAMES = tuple(name for name, _ in EVAL_RUN_COLUMNS)
EVAL_SCORE_COLUMN_NAMES = tuple(name for name, _ in EVAL_SCORE_COLUMNS)
COLLECTION_COLUMN_NAMES = tuple(name for name, _ in COLLECTION_COLUMNS)
