"""Gates: ``judge>=0.8`` — a scorer's mean over a candidate's newest finished evaluation run,
compared with a number. ``eval run --gate`` checks the run it just made; promotions call
``failing_gates`` with the gates of ``evaluations.gates`` for the candidate they promote (for a
prompt version ``NAME@V``, a run of ``NAME@V/MODEL`` counts too: see ``newest_run_of``).

Besides the run's scorers, a gate may name the run's call measures: ``error_rate`` (share of
items whose call failed), ``latency_p50_ms``, ``latency_p95_ms`` and ``cost_usd`` (mean cost
per item).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config.evaluations import GATE_RE, check_gate

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}

# The newest finished run that evaluated a candidate, and the candidate's name in that run. A
# run has a starting row and a finishing row (ReplacingMergeTree by version): argMax by version
# reads the latest without FINAL. ``prefix`` (``NAME@V/`` for a prompt version, else empty) also
# matches the prompt version rendered into a model (``NAME@V/MODEL``); the exact name first.
NEWEST_RUN_SQL = """
SELECT run_id, argMax(finished, version) AS finished_at, argMax(candidates, version) AS cands,
       if(has(cands, {candidate:String}), {candidate:String},
          arrayFirst(c -> {prefix:String} != '' AND startsWith(c, {prefix:String}), cands)) AS matched
FROM llm_eval_runs
GROUP BY run_id
HAVING argMax(status, version) = 'finished' AND matched != ''
ORDER BY finished_at DESC, run_id DESC
LIMIT 1
"""

# Per scorer: the mean of the scores that are not NULL. Per call (one per item, repeated on
# each scorer's row): errors, latency quantiles and the mean cost.
GATE_VALUES_SQL = """
SELECT scorer, avg(score) AS mean, count(score) AS scored
FROM llm_eval_scores
WHERE run_id = {run:String} AND candidate = {candidate:String}
GROUP BY scorer
ORDER BY scorer
"""
CALL_VALUES_SQL = """
SELECT count() AS items, countIf(err != '') / count() AS error_rate,
       quantileExact(0.5)(lat) AS latency_p50_ms, quantileExact(0.95)(lat) AS latency_p95_ms,
       avg(cost) AS cost_usd
FROM (SELECT item, any(error) AS err, any(latency_ms) AS lat, any(cost_usd) AS cost
      FROM llm_eval_scores WHERE run_id = {run:String} AND candidate = {candidate:String} GROUP BY item)
"""
CALL_MEASURES = ("error_rate", "latency_p50_ms", "latency_p95_ms", "cost_usd")


class Reader(Protocol):
    """Runs a read-only query with ``{name:Type}`` parameters; the rows as dicts
    (``gateway.cli.sessions.RowSource`` is one)."""

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict]: ...


@dataclass(frozen=True)
class Gate:
    """``metric op threshold``, as written in ``text``."""

    text: str
    metric: str
    op: str
    threshold: float

    def passes(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)


def parse_gate(text: str) -> Gate:
    """``"judge>=0.8"`` → ``Gate("judge>=0.8", "judge", ">=", 0.8)``; raises ``ValueError``."""
    check_gate(text)
    m = GATE_RE.match(text)
    assert m is not None  # check_gate matched it
    return Gate(text.strip(), m.group(1), m.group(2), float(m.group(3)))


def newest_run(reader: Reader, candidate: str) -> str | None:
    """The id of the newest finished run that evaluated ``candidate``, or ``None``."""
    found = newest_run_of(reader, candidate)
    return found[0] if found else None


def newest_run_of(reader: Reader, candidate: str) -> tuple[str, str] | None:
    """``(run id, candidate as the run names it)`` of the newest finished run that evaluated
    ``candidate``, or ``None``. A prompt version ``NAME@V`` also counts as evaluated by a run of
    ``NAME@V/MODEL`` (the version rendered into a model; ``eval run -c NAME@V/MODEL``)."""
    prompt_version = "@" in candidate and "/" not in candidate
    rows = reader.rows(NEWEST_RUN_SQL, {"candidate": candidate, "prefix": f"{candidate}/" if prompt_version else ""})
    return (rows[0]["run_id"], rows[0]["matched"]) if rows else None


def gate_values(reader: Reader, run_id: str, candidate: str) -> dict[str, float | None]:
    """What gates can name for ``candidate`` in ``run_id``: each scorer's mean (``None`` when it
    scored no item) and the call measures."""
    params = {"run": run_id, "candidate": candidate}
    values: dict[str, float | None] = {
        r["scorer"]: (None if r["mean"] is None or not int(r["scored"]) else float(r["mean"]))
        for r in reader.rows(GATE_VALUES_SQL, params)}
    calls = reader.rows(CALL_VALUES_SQL, params)
    if calls and int(calls[0]["items"]):
        for name in CALL_MEASURES:
            value = calls[0].get(name)
            values[name] = None if value is None else float(value)
    return values


def check_gate_names(gates: list[Gate], scorers: list[str]) -> None:
    """Refuse (``ValueError``) a gate that names neither one of ``scorers`` (a run's) nor a call
    measure: it could only fail, after every call."""
    for gate in gates:
        if gate.metric not in scorers and gate.metric not in CALL_MEASURES:
            raise ValueError(f"gate {gate.text!r}: {gate.metric!r} is neither a scorer of this run "
                             f"({', '.join(scorers)}) nor a measure ({', '.join(CALL_MEASURES)})")


def check_gates(values: dict[str, float | None], gates: list[Gate], where: str) -> list[str]:
    """One line per gate that ``values`` fails (``where``: the run and candidate, for the message)."""
    failures = []
    for gate in gates:
        value = values.get(gate.metric)
        if gate.metric not in values:
            failures.append(f"{gate.text}: {where} has no scorer or measure {gate.metric!r} "
                            f"(has: {', '.join(sorted(values)) or 'none'})")
        elif value is None:
            failures.append(f"{gate.text}: {where} has no {gate.metric} score (every item unscored)")
        elif not gate.passes(value):
            failures.append(f"{gate.text}: {gate.metric} is {value:.4g} in {where}")
    return failures


def failing_gates(reader: Reader, candidate: str, gates: list[str]) -> list[str]:
    """The gates ``candidate``'s newest finished evaluation run fails, as one line each; ``[]``
    when all pass (or there are none). No finished run is one failure that says so."""
    if not gates:
        return []
    parsed = [parse_gate(g) for g in gates]
    found = newest_run_of(reader, candidate)
    if found is None:
        return [f"no finished evaluation run of {candidate!r} (run: llm-gateway eval run --candidate {candidate})"]
    run_id, name = found
    return check_gates(gate_values(reader, run_id, name), parsed, f"run {run_id} ({name})")


__all__ = ["Gate", "Reader", "check_gate_names", "check_gates", "failing_gates", "gate_values", "newest_run",
           "newest_run_of", "parse_gate"]
