"""Rows of ``prompt_versions`` and ``llm_feedback``, written through telemetry's sink machinery.

``TableSink`` is a ``TelemetrySink`` (same queue, writer thread, batching, insert
deduplication tokens, disk spool and replay) whose queue holds ``(table, columns, row)``
items instead of request contexts. It has its own spool folder (``<spool_dir>-prompts``)
and its own connection to the same store; a batch mixes both tables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from gateway.config import ConfigSnapshot
from gateway.prompts.registry import CompiledVersion
from gateway.telemetry.clickhouse import ClickHouseStore
from gateway.telemetry.columns import FEEDBACK, FEEDBACK_COLUMN_NAMES, PROMPT_VERSION_COLUMN_NAMES, PROMPT_VERSIONS
from gateway.telemetry.facts import TableRow, decode, encode_table_row
from gateway.telemetry.sink import TelemetrySink
from gateway.telemetry.spool import Batch, Part, Spool
from gateway.telemetry.values import encode_rows, format_ts


class _TableBatch(Batch):
    """A batch whose row count is every part's rows (one queue item is one row)."""

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)


class TableSink(TelemetrySink):
    """A sink for rows of tables other than ``llm_requests``: ``emit((table, columns, row))``."""

    def _make_batch(self, items: list) -> Batch:
        grouped: dict[tuple[str, tuple[str, ...]], list[list[Any]]] = {}
        for item in items:  # through the facts record, as the log will carry it
            record = decode(encode_table_row(*item))
            assert isinstance(record, TableRow)
            grouped.setdefault((record.table, record.columns), []).append(record.row)
        return _TableBatch.new([Part(table, columns, encode_rows(rows), len(rows))
                                for (table, columns), rows in grouped.items()])


def build_table_sink(snapshot: ConfigSnapshot, data_dir: str | os.PathLike | None = None) -> TableSink:
    """A (not yet started) ``TableSink`` for ``snapshot``'s telemetry settings."""
    t = snapshot.config.telemetry
    ddir = t.resolved_data_dir(str(data_dir) if data_dir else None)
    store = ClickHouseStore(t.clickhouse, t.resolved_dsn(ddir))
    spool = Spool(Path(str(t.resolved_spool_dir(ddir)) + "-prompts"))
    return TableSink(store, None, spool, t, display=store.target.display)


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
                 label: str, comment: str, tenant: str, api_key_id: str) -> tuple[str, tuple[str, ...], list[Any]]:
    """The ``llm_feedback`` item of one feedback."""
    return (FEEDBACK, FEEDBACK_COLUMN_NAMES, [feedback_id, format_ts(ts), request_uuid, client_request_id,
                                              score, label, comment, tenant, api_key_id])
