"""The comparison report of one run (``eval run``) or of two (``eval compare``), read back from
``llm_eval_runs``/``llm_eval_scores``, as JSON-ready data and as text.

An *arm* is one candidate of one run. In one run, arms are named by candidate; comparing runs,
by candidate too when no candidate is in both runs, else ``A:candidate`` / ``B:candidate``.
Items pair on their ids when every item of the arms has a distinct one, else on their index.
Per arm: items, failed calls, cost (total, mean per priced item, unpriced calls) and call
latency p50/p95 — the candidate's calls only, not the judge's. Per scorer and arm: the mean of
the scores that are not NULL with its 95% interval, and the items left unscored. Per scorer
and pair of arms: the paired difference A − B with its interval and p-value (``stats``).
"""

from __future__ import annotations

import re
from itertools import combinations
from typing import Any

from gateway.evals import stats
from gateway.evals.gates import Reader

RUN_SQL = """
SELECT run_id, toString(min(started)) AS started, toString(argMax(finished, version)) AS finished,
       argMax(dataset, version) AS dataset, argMax(dataset_hash, version) AS dataset_hash,
       argMax(candidates, version) AS candidates, argMax(scorers, version) AS scorers,
       argMax(status, version) AS status, argMax(items, version) AS items, argMax(config, version) AS config
FROM llm_eval_runs WHERE run_id = {run:String} GROUP BY run_id
"""
SCORES_SQL = """
SELECT candidate, item, item_id, scorer, score, reason, request_id, latency_ms, cost_usd, error
FROM llm_eval_scores WHERE run_id = {run:String}
ORDER BY candidate, scorer, item
"""


class ReportError(ValueError):
    """A run is not in the store."""


def load_run(reader: Reader, run_id: str) -> tuple[dict, list[dict]]:
    """``(run row, score rows)`` of ``run_id``; raises ``ReportError`` when it is unknown."""
    runs = reader.rows(RUN_SQL, {"run": run_id})
    if not runs:
        raise ReportError(f"no evaluation run {run_id!r} in llm_eval_runs")
    return runs[0], reader.rows(SCORES_SQL, {"run": run_id})


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def _arm_summary(rows: list[dict]) -> dict[str, Any]:
    calls: dict[int, dict] = {}
    for r in rows:  # one call per item, repeated on each scorer's row
        calls.setdefault(int(r["item"]), r)
    costs = [float(c["cost_usd"]) for c in calls.values() if c.get("cost_usd") is not None]
    latencies = [float(c["latency_ms"]) for c in calls.values() if not c.get("error")]
    failed = sum(1 for c in calls.values() if c.get("error"))
    return {"items": len(calls), "failed_calls": failed,
            "cost_usd": {"total": _r(sum(costs)) if costs else None,
                         "per_item": _r(sum(costs) / len(costs)) if costs else None,
                         "unpriced": len(calls) - failed - len(costs)},
            "latency_ms": {"p50": _r(stats.quantile(latencies, 0.5), 1),
                           "p95": _r(stats.quantile(latencies, 0.95), 1)}}


def _interval(iv: stats.Interval) -> dict[str, Any]:
    return {"n": iv.n, "mean": _r(iv.mean), "ci95": None if iv.low is None else [_r(iv.low), _r(iv.high)]}


def build_report(runs: list[tuple[dict, list[dict]]]) -> dict[str, Any]:
    """The report of one run or more (``load_run``'s results)."""
    letters = "ABCDEFGH"
    by_run = [set(run["candidates"]) for run, _ in runs]
    shared = len(runs) > 1 and any(a & b for a, b in combinations(by_run, 2))
    arms: dict[str, dict[str, Any]] = {}
    rows_of: dict[str, list[dict]] = {}
    for i, (run, rows) in enumerate(runs):
        def arm_of(candidate: str, i: int = i) -> str:
            return f"{letters[i]}:{candidate}" if shared else candidate

        for candidate in run["candidates"]:  # in the run's order
            arms[arm_of(candidate)] = {"run_id": run["run_id"], "candidate": candidate}
            rows_of[arm_of(candidate)] = []
        for r in rows:
            rows_of.setdefault(arm_of(r["candidate"]), []).append(r)
    scorers = list(dict.fromkeys(s for run, _ in runs for s in run["scorers"]))
    by_id = all(r.get("item_id") for rows in rows_of.values() for r in rows) and all(
        len({r["item_id"] for r in rows}) == len({int(r["item"]) for r in rows}) for rows in rows_of.values())

    def key(r: dict) -> Any:
        return r["item_id"] if by_id else int(r["item"])

    report: dict[str, Any] = {
        "runs": [{k: run[k] for k in ("run_id", "started", "finished", "status", "dataset", "dataset_hash", "items",
                                      "candidates", "scorers")} | {"name": letters[i] if len(runs) > 1 else None}
                 for i, (run, _) in enumerate(runs)],
        "paired_on": "item id" if by_id else "item index",
        "test": stats.TEST,
        "arms": {arm: {**info, **_arm_summary(rows_of[arm])} for arm, info in arms.items()},
        "scores": {}, "pairwise": {}}
    if len({run["dataset_hash"] for run, _ in runs}) > 1:
        report["warning"] = "the runs' datasets differ (dataset_hash): only items present in both are paired"
    for scorer in scorers:
        per_arm: dict[str, dict[Any, float]] = {}
        unscored: dict[str, int] = {}
        for arm, rows in rows_of.items():
            mine = [r for r in rows if r["scorer"] == scorer]
            per_arm[arm] = {key(r): float(r["score"]) for r in mine if r.get("score") is not None}
            unscored[arm] = len(mine) - len(per_arm[arm])
        bounds = stats.SCORE_RANGES.get(scorer)
        report["scores"][scorer] = {
            arm: {**_interval(stats.mean_ci(list(vals.values()), bounds)), "unscored": unscored[arm]}
            for arm, vals in per_arm.items()}
        pairs = []
        for a, b in combinations(per_arm, 2):
            common = [k for k in per_arm[a] if k in per_arm[b]]
            p = stats.paired([per_arm[a][k] for k in common], [per_arm[b][k] for k in common], bounds)
            pairs.append({"a": a, "b": b, **_interval(p.diff), "p_value": _r(p.p_value), "significant": p.significant,
                          "note": p.note or None})
        report["pairwise"][scorer] = pairs
    return report


def _fmt(x: Any, spec: str = ".3f") -> str:
    """``x`` formatted by ``spec``; ``-`` when it is missing, as wide as ``spec`` says."""
    if x is None:
        width = re.match(r">?(\d*)", spec)
        return "-".rjust(int(width.group(1))) if width and width.group(1) else "-"
    return format(x, spec)


def render_text(report: dict[str, Any]) -> str:
    """The report as the terminal shows it."""
    lines = []
    for run in report["runs"]:
        prefix = f"[{run['name']}] " if run.get("name") else ""
        lines.append(f"{prefix}run {run['run_id']}  {run['status']}  dataset {run['dataset']} "
                     f"({run['items']} items, sha256 {run['dataset_hash'][:12]})  started {run['started']}")
    if report.get("warning"):
        lines.append(f"warning: {report['warning']}")
    lines.append("")
    width = max([len(a) for a in report["arms"]] + [9])
    lines.append(f"{'candidate':<{width}}  items  failed  cost total  cost/item   p50 ms   p95 ms")
    for arm, a in report["arms"].items():
        cost = a["cost_usd"]
        lines.append(f"{arm:<{width}}  {a['items']:>5}  {a['failed_calls']:>6}  {_fmt(cost['total'], '>10.6f')}  "
                     f"{_fmt(cost['per_item'], '>9.6f')}  {_fmt(a['latency_ms']['p50'], '>7.1f')}  "
                     f"{_fmt(a['latency_ms']['p95'], '>7.1f')}"
                     + (f"  ({cost['unpriced']} unpriced)" if cost["unpriced"] else ""))
    for scorer, per_arm in report["scores"].items():
        lines.append("")
        lines.append(f"{scorer}: mean [95% CI] (n)")
        for arm, s in per_arm.items():
            ci = f"[{_fmt(s['ci95'][0])}, {_fmt(s['ci95'][1])}]" if s["ci95"] else "[-]"
            extra = f", {s['unscored']} unscored" if s["unscored"] else ""
            lines.append(f"  {arm:<{width}}  {_fmt(s['mean'])} {ci} (n={s['n']}{extra})")
        for p in report["pairwise"].get(scorer, []):
            ci = f"[{_fmt(p['ci95'][0])}, {_fmt(p['ci95'][1])}]" if p["ci95"] else "[-]"
            verdict = {True: "significant", False: "not significant"}.get(p["significant"]) or p.get("note") or "-"
            lines.append(f"  {p['a']} - {p['b']}: {_fmt(p['mean'], '+.3f')} {ci} (n={p['n']}, "
                         f"p={_fmt(p['p_value'], '.4f')}, {verdict})")
    lines.append("")
    lines.append(f"test: {report['test']}; pairs on {report['paired_on']}")
    return "\n".join(lines) + "\n"


__all__ = ["ReportError", "build_report", "load_run", "render_text"]
