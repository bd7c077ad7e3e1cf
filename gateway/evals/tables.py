"""Rows of ``llm_eval_runs`` and ``llm_eval_scores`` (columns: ``gateway.telemetry.columns``).

``eval run`` writes them as table records of the request log (``RequestLog.emit_row``), like
prompt versions and feedback, so the ingester inserts them with the run's request rows.
A run is written twice: when it starts (``running``) and when it ends (``finished`` or
``failed``); the later row has the higher ``version`` and replaces the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.telemetry.columns import EVAL_RUN_COLUMN_NAMES, EVAL_RUNS, EVAL_SCORE_COLUMN_NAMES, EVAL_SCORES
from gateway.telemetry.values import format_ts

TableRow = tuple[str, tuple[str, ...], list[Any]]


@dataclass
class RunRecord:
    """What ``llm_eval_runs`` says of one run."""

    run_id: str
    started: float
    dataset: str
    dataset_hash: str
    candidates: list[str]
    scorers: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    items: int = 0


def run_row(run: RunRecord, status: str, finished: float | None, version: int) -> TableRow:
    """The ``llm_eval_runs`` row of ``run`` in ``status`` (``version`` orders its rows)."""
    return (EVAL_RUNS, EVAL_RUN_COLUMN_NAMES, [
        run.run_id, format_ts(run.started), None if finished is None else format_ts(finished),
        run.dataset, run.dataset_hash, list(run.candidates), list(run.scorers),
        orjson.dumps(run.config, option=orjson.OPT_SORT_KEYS).decode(), status, run.items, version])


@dataclass(frozen=True)
class ScoreRecord:
    """One scorer's verdict on one candidate's answer to one item."""

    run_id: str
    ts: float
    candidate: str
    item: int
    item_id: str
    scorer: str
    score: float | None
    reason: str
    request_id: str
    latency_ms: float
    cost_usd: float | None
    error: str


def score_row(s: ScoreRecord) -> TableRow:
    """The ``llm_eval_scores`` row of ``s``."""
    return (EVAL_SCORES, EVAL_SCORE_COLUMN_NAMES, [
        s.run_id, format_ts(s.ts), s.candidate, s.item, s.item_id, s.scorer, s.score, s.reason,
        s.request_id, round(s.latency_ms, 3), s.cost_usd, s.error])


__all__ = ["RunRecord", "ScoreRecord", "TableRow", "run_row", "score_row"]
