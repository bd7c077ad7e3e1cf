"""Columns of the prompt tables in ClickHouse (the DDL in ``telemetry/schema.py`` is generated
from these; kept import-light so the schema can use them).

- ``prompt_versions`` (ReplacingMergeTree, ``ORDER BY (name, version)``): one row per prompt
  version with its exact template source, so any request row's ``(prompt_id, prompt_version)``
  joins to the text that produced it. Re-inserts (every start) carry the same values.
- ``llm_feedback`` (MergeTree, ``ORDER BY (request_id, ts)``): one row per ``POST /v1/feedback``;
  joins to ``llm_requests`` on ``request_id``.
"""

from __future__ import annotations

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
    ("first_seen", "DateTime64(3, 'UTC')"),
)

FEEDBACK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("feedback_id", "UUID"),
    ("ts", "DateTime64(3, 'UTC')"),
    ("request_id", "UUID"),
    ("client_request_id", "String"),
    ("score", "Float64"),
    ("label", "LowCardinality(String)"),
    ("comment", "String"),
    ("tenant", "LowCardinality(String)"),
    ("api_key_id", "String"),
)

PROMPT_VERSION_COLUMN_NAMES = tuple(name for name, _ in PROMPT_VERSION_COLUMNS)
FEEDBACK_COLUMN_NAMES = tuple(name for name, _ in FEEDBACK_COLUMNS)
