"""Rows of ``prompt_versions`` and ``llm_feedback``: written to the request log as table records
(``RequestLog.emit_row``), inserted by the ingester like request rows."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.prompts.registry import CompiledVersion
from gateway.telemetry.columns import FEEDBACK, FEEDBACK_COLUMN_NAMES, PROMPT_VERSION_COLUMN_NAMES, PROMPT_VERSIONS
from gateway.telemetry.values import format_ts


def version_row(cv: CompiledVersion) -> tuple[str, tuple[str, ...], list[Any]]:
    """The ``prompt_versions`` item of one version."""
    spec = cv.spec
    return (PROMPT_VERSIONS, PROMPT_VERSION_COLUMN_NAMES, [
        cv.prompt, cv.version, cv.content_hash, spec.mode,
        orjson.dumps(cv.source_messages()).decode(),
        orjson.dumps([v.model_dump(mode="json") for v in spec.variables]).decode(),
        orjson.dumps(spec.params, option=orjson.OPT_SORT_KEYS).decode(),
        spec.note, cv.source, format_ts(cv.first_seen)])


def feedback_row(feedback_id: str, ts: float, request_uuid: str, client_request_id: str, score: float,
                 label: str, comment: str, tenant: str, api_key_id: str,
                 rater: str = "") -> tuple[str, tuple[str, ...], list[Any]]:
    """The ``llm_feedback`` item of one feedback."""
    return (FEEDBACK, FEEDBACK_COLUMN_NAMES, [feedback_id, format_ts(ts), request_uuid, client_request_id,
                                              score, label, comment, tenant, api_key_id, rater])
