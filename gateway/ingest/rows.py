"""Log records → rows: the ingester's half of a request's telemetry.

The serving process writes each request's facts (``gateway.telemetry.facts``) to the request
log; here they become the rows of ``llm_requests`` and ``llm_attempts`` (pricing, token
estimates, inter-token percentiles, redaction: everything that costs CPU), and table records
(prompt versions, feedback) become their rows as they are. A record that cannot be decoded or
built still yields a minimal request row (``RowBuilder.fallback_row``), so no request goes
unrecorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from gateway.telemetry import facts
from gateway.telemetry.columns import ATTEMPT_COLUMN_NAMES, REQUEST_COLUMN_NAMES
from gateway.telemetry.record import RowBuilder

log = logging.getLogger("gateway.ingest")

REQUESTS = "llm_requests"
ATTEMPTS = "llm_attempts"


@dataclass
class TableRows:
    """The rows of one table in one batch, in ``columns`` order."""

    columns: tuple[str, ...]
    rows: list[list[Any]] = field(default_factory=list)


class _Undecodable:
    """What ``fallback_row`` reads from a record that could not be decoded."""

    request_id = ""
    client_request_id = ""
    ts_start = 0.0


def build_rows(builder: RowBuilder, payloads: list[bytes]) -> dict[str, TableRows]:
    """The rows of ``payloads`` grouped by table (tables in first-seen order)."""
    tables: dict[str, TableRows] = {}
    requests = attempts = None
    for payload in payloads:
        try:
            record = facts.decode(payload)
        except Exception as exc:  # a record the serving process wrote but this code cannot read
            log.error("ingest: undecodable record (%s); writing a minimal row", type(exc).__name__)
            if requests is None:
                requests = tables.setdefault(REQUESTS, TableRows(tuple(REQUEST_COLUMN_NAMES)))
            requests.rows.append(builder.fallback_row(_Undecodable(), exc))
            continue
        if isinstance(record, facts.TableRow):
            tables.setdefault(record.table, TableRows(tuple(record.columns))).rows.append(list(record.row))
            continue
        if requests is None:
            requests = tables.setdefault(REQUESTS, TableRows(tuple(REQUEST_COLUMN_NAMES)))
        try:
            row = builder.request_row(record)
            extra = builder.attempt_rows(record, row[0])
        except Exception as exc:  # never lose a request: a minimal row instead
            log.exception("ingest: row could not be built; writing a minimal row")
            requests.rows.append(builder.fallback_row(record, exc))
            continue
        requests.rows.append(row)
        if extra:
            if attempts is None:
                attempts = tables.setdefault(ATTEMPTS, TableRows(tuple(ATTEMPT_COLUMN_NAMES)))
            attempts.rows.extend(extra)
    return tables
