"""``eval run``: every candidate on every item, through a gateway started in-process on a
loopback port (``build_app`` with its ingester on a thread: the real handlers, routing, prompts,
plugins and limits, and the cache only with ``cache``), then scored and recorded.

1. ``llm_eval_runs`` gets the run as ``running``.
2. Calls go out ``concurrency`` at a time; each is a row of ``llm_requests`` tagged
   ``eval_run``/``eval_candidate``; the scorers score each answer as it comes.
3. The rows are flushed into the store, each call's cost and latency read back from its row
   (``latency_ms`` is the gateway's own measure; the client's when the row is missing).
4. ``llm_eval_scores`` gets one row per (candidate, item, scorer), ``llm_eval_runs`` the run as
   ``finished`` (``failed`` if anything above raised, an interrupt included, or no candidate
   call succeeded: then ``execute`` raises ``EvalError`` naming the first error), and both are
   flushed, so the report and the gates read them back from the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.evals.calls import GatewayCaller, Progress
from gateway.evals.candidates import Candidate
from gateway.evals.dataset import Dataset, Item
from gateway.evals.gates import Reader
from gateway.evals.scorers import Scorer, Verdict
from gateway.evals.scorers.models import ModelAnswer, answer_text
from gateway.evals.tables import RunRecord, ScoreRecord, TableRow, run_row, score_row

COSTS_SQL = """
SELECT toString(request_id) AS request_id, cost_usd, latency_ms FROM llm_requests
WHERE metadata['eval_run'] = {run:String} AND metadata['eval_candidate'] != ''
"""
FLUSH_TIMEOUT_S = 120


class EvalError(RuntimeError):
    """The run cannot go on (telemetry off, the store never took the rows)."""


@dataclass
class Outcome:
    """One candidate's answer to one item, and its scorers' verdicts."""

    candidate: Candidate
    item: Item
    answer: ModelAnswer
    verdicts: list[Verdict]
    cost_usd: float | None = None


@dataclass
class RunPlan:
    run_id: str
    dataset: Dataset
    candidates: list[Candidate]
    scorers: list[Scorer]
    caller: GatewayCaller
    concurrency: int = 4
    config: dict[str, Any] = field(default_factory=dict)


async def call_and_score(plan: RunPlan, base_url: str, progress: Progress) -> list[Outcome]:
    """Every candidate on every item (item by item, so a partial run stays balanced)."""
    import httpx

    sem = asyncio.Semaphore(plan.concurrency)

    async def one(candidate: Candidate, item: Item) -> Outcome:
        async with sem:
            answer = await plan.caller.post("chat/completions", candidate.body(item),
                                            {"eval_candidate": candidate.name})
            if answer.status == 200:
                output = answer_text(answer.body)
                verdicts = [await s.score(item, output) for s in plan.scorers]
            else:
                verdicts = [Verdict(None) for _ in plan.scorers]
        progress.tick(answer.status == 200)
        return Outcome(candidate, item, answer, verdicts)

    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(600.0, connect=10.0),
                                 trust_env=False, limits=httpx.Limits(max_connections=plan.concurrency * 2)) as http:
        plan.caller.client = http
        return list(await asyncio.gather(*(one(c, item) for item in plan.dataset.items for c in plan.candidates)))


def score_rows(plan: RunPlan, outcomes: list[Outcome], now: float) -> list[TableRow]:
    """One row per (outcome, scorer). ``error`` is the candidate call's (the item has no output);
    a scorer's own failure (its model call, a bad pattern) is its row's ``reason``, score NULL."""
    rows = []
    for o in outcomes:
        a = o.answer
        for scorer, v in zip(plan.scorers, o.verdicts):
            rows.append(score_row(ScoreRecord(
                plan.run_id, now, o.candidate.name, o.item.index, o.item.item_id, scorer.name, v.score,
                v.error or v.reason, a.request_id, a.latency_ms, o.cost_usd, a.error)))
    return rows


class InProcessGateway:
    """The gateway ``eval run`` calls: ``server`` a started ``BackgroundServer``, ``reader`` a
    ``Reader`` through its ``/admin/query``, ``admin_key`` for its admin endpoints."""

    def __init__(self, server: Any, reader: Reader, admin_key: str | None):
        from gateway.telemetry import SINK

        self.server = server
        self.reader = reader
        self.admin_key = admin_key
        self.sink = server.app.get(SINK)
        if self.sink is None:
            raise EvalError("telemetry is off (telemetry.enabled: false or LLM_GATEWAY_TELEMETRY=off): an "
                            "evaluation is recorded in llm_eval_runs/llm_eval_scores and needs it")

    def emit(self, rows: list[TableRow]) -> None:
        async def emit() -> None:  # on the server's loop, where the request log is written
            for row in rows:
                self.sink.emit_row(*row)
        self.server.call(emit())

    def flush(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.admin_key}"} if self.admin_key else {}
        resp = httpx.post(f"{self.server.url}/admin/telemetry/flush?timeout={FLUSH_TIMEOUT_S}", headers=headers,
                          timeout=FLUSH_TIMEOUT_S + 30, trust_env=False)
        if resp.status_code != 200 or not resp.json().get("flushed"):
            raise EvalError(f"the telemetry store did not take the run's rows within {FLUSH_TIMEOUT_S} s "
                            f"(HTTP {resp.status_code}: {resp.text[:300]})")


def execute(plan: RunPlan, gateway: InProcessGateway, progress: Progress,
            clock: Callable[[], float] = time.time) -> list[Outcome]:
    """Run ``plan`` against ``gateway`` and record it (see the module docstring)."""
    p = plan
    record = RunRecord(p.run_id, clock(), p.dataset.name, p.dataset.content_hash, [c.name for c in p.candidates],
                       [s.name for s in p.scorers], p.config, len(p.dataset.items))
    gateway.emit([run_row(record, "running", None, 1)])
    try:
        outcomes = asyncio.run(call_and_score(p, gateway.server.url, progress))
        gateway.flush()
        rows = {r["request_id"]: r for r in gateway.reader.rows(COSTS_SQL, {"run": p.run_id})}
        for o in outcomes:
            row = rows.get(o.answer.request_id)
            if row is not None:
                o.cost_usd = None if row.get("cost_usd") is None else float(row["cost_usd"])
                o.answer = ModelAnswer(o.answer.status, o.answer.body, o.answer.error, o.answer.request_id,
                                       float(row["latency_ms"]))
        # No call answered (every one refused, e.g. 401 without a key): nothing was evaluated.
        failed = [o.answer.error for o in outcomes if o.answer.status != 200]
        status = "failed" if outcomes and len(failed) == len(outcomes) else "finished"
        gateway.emit(score_rows(p, outcomes, clock()) + [run_row(record, status, clock(), 2)])
        gateway.flush()
    except BaseException:
        gateway.emit([run_row(record, "failed", clock(), 2)])
        try:
            gateway.flush()
        except Exception:  # the original failure is what the operator needs to see
            pass
        raise
    if status == "failed":
        raise EvalError(f"run {p.run_id}: every call failed ({len(failed)} of {len(outcomes)}; recorded as "
                        f"failed); the first: {failed[0]}")
    return outcomes


__all__ = ["EvalError", "InProcessGateway", "Outcome", "RunPlan", "call_and_score", "execute"]
