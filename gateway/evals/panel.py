"""The dashboard's Evaluations panel: ``GET /admin/dashboard/evaluations`` — the runs started in
the dashboard's range (newest first, at most ``limit``, default 20; ``run=ID``: that run alone,
whatever the range; the ``model`` filter: runs that evaluated that candidate), each with its
candidates' calls (items, failed calls, cost, latency p50/p95) and each scorer's mean, spread
(``sd``), scored and unscored items. The intervals and significance tests are the CLI's
(``eval compare``): the serving process never loads scipy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.dashboard.filters import FilterError, Filters
from gateway.dashboard.sql import Fetch

RUNS = """
SELECT run_id, toUnixTimestamp64Milli(min(started)) AS started_ms,
       toUnixTimestamp64Milli(argMax(finished, version)) AS finished_ms, argMax(status, version) AS status,
       argMax(dataset, version) AS dataset, argMax(items, version) AS items,
       argMax(candidates, version) AS candidates, argMax(scorers, version) AS scorers
FROM llm_eval_runs
GROUP BY run_id
HAVING if({run:String} != '', run_id = {run:String},
          started_ms >= {from_ms:Int64} AND started_ms < {to_ms:Int64}
          AND ({model:String} = '' OR has(candidates, {model:String})))
ORDER BY started_ms DESC, run_id
LIMIT {limit:UInt32}
"""
SCORES = """
SELECT run_id, candidate, scorer, count(score) AS n, avg(score) AS mean, stddevSampOrNull(score) AS sd,
       countIf(score IS NULL) AS unscored
FROM llm_eval_scores WHERE run_id IN {runs:Array(String)}
GROUP BY run_id, candidate, scorer
"""
CALLS = """
SELECT run_id, candidate, count() AS items, countIf(err != '') AS failed_calls,
       sumOrNull(cost) AS cost_usd, quantileExactIf(0.5)(lat, err = '') AS p50_ms,
       quantileExactIf(0.95)(lat, err = '') AS p95_ms
FROM (SELECT run_id, candidate, item, any(error) AS err, any(latency_ms) AS lat, any(cost_usd) AS cost
      FROM llm_eval_scores WHERE run_id IN {runs:Array(String)} GROUP BY run_id, candidate, item)
GROUP BY run_id, candidate
"""


def _round(value: Any, digits: int) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def evaluation_runs(fetch: Fetch, f: Filters, run: str = "", limit: int = 20) -> dict[str, Any]:
    runs = fetch(RUNS, {**f.params(), "run": run, "limit": limit})
    ids = [r["run_id"] for r in runs]
    scores: dict[tuple[str, str], dict[str, Any]] = {}
    calls: dict[tuple[str, str], dict[str, Any]] = {}
    if ids:
        for r in fetch(SCORES, {"runs": ids}):
            scores.setdefault((r["run_id"], r["candidate"]), {})[r["scorer"]] = {
                "n": r["n"], "mean": _round(r["mean"], 4), "sd": _round(r["sd"], 4), "unscored": r["unscored"]}
        for r in fetch(CALLS, {"runs": ids}):
            calls[(r["run_id"], r["candidate"])] = {
                "items": r["items"], "failed_calls": r["failed_calls"], "cost_usd": _round(r["cost_usd"], 6),
                "p50_ms": _round(r["p50_ms"], 1), "p95_ms": _round(r["p95_ms"], 1)}
    out = []
    for r in runs:
        out.append({**r, "results": [{"candidate": c, **calls.get((r["run_id"], c), {}),
                                      "scores": scores.get((r["run_id"], c), {})} for c in r["candidates"]]})
    return {"range": f.describe(), "runs": out}


def evaluations_panel(query: Mapping[str, str], config: Any) -> Callable[[Fetch, Filters], dict[str, Any]]:
    """The panel's figures for one request's ``query`` (``FilterError`` when malformed)."""
    run = query.get("run", "")
    if len(run) > 200:
        raise FilterError("run id too long")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise FilterError("limit must be an integer") from None
    if not 1 <= limit <= 200:
        raise FilterError("limit must be between 1 and 200")
    return lambda fetch, filters: evaluation_runs(fetch, filters, run, limit)


__all__ = ["evaluation_runs", "evaluations_panel"]
