"""``failing_gates`` on real chDB: it reads the newest *finished* run of a candidate (a run that
is still running, failed, or newer but of another candidate does not count), a run's finishing
row replaces its starting row, and no run at all is a failure that says so."""

from __future__ import annotations

import time

import orjson
import pytest

from gateway.config.telemetry import ClickHouseSettings
from gateway.evals.gates import failing_gates, gate_values, newest_run, newest_run_of
from gateway.evals.tables import RunRecord, ScoreRecord, run_row, score_row
from gateway.telemetry.clickhouse import ClickHouseStore, ReadOnlyClient
from gateway.telemetry.values import encode_rows
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb  # noqa: F401


class Reader:
    """The gates' reader over the gateway's own read-only client."""

    def __init__(self, database: str):
        self.client = ReadOnlyClient(ClickHouseSettings(database=database), chdb_dsn())

    def rows(self, sql: str, params: dict) -> list[dict]:
        data = self.client.query(sql, "JSONEachRow", params)
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]


@pytest.fixture
def store(tdb):
    s = ClickHouseStore(ClickHouseSettings(database=tdb), chdb_dsn())
    s.ensure()
    reader = Reader(tdb)
    yield s, reader
    reader.client.close()
    s.close()


def write(store, rows, token):
    by_table: dict[str, list] = {}
    for table, columns, row in rows:
        by_table.setdefault(table, [columns, []])[1].append(row)
    for table, (columns, values) in by_table.items():
        store.insert(table, columns, encode_rows(values), token)


def a_run(store, run_id, candidates, scores, *, status="finished", started=None):
    """A run of ``candidates`` with ``scores``: {candidate: {scorer: [score per item]}}."""
    started = started or time.time()
    run = RunRecord(run_id, started, "data.jsonl", "h", candidates, sorted({s for c in scores.values() for s in c}),
                    {}, items=max(len(v) for c in scores.values() for v in c.values()))
    rows = [run_row(run, "running", None, 1)]
    for candidate, by_scorer in scores.items():
        for scorer, values in by_scorer.items():
            rows += [score_row(ScoreRecord(run_id, started, candidate, i, f"id{i}", scorer, v, "", f"req-{i}",
                                           100.0 * (i + 1), 0.001, "" if v is not None else "HTTP 500"))
                     for i, v in enumerate(values)]
    write(store, rows, f"{run_id}-a")
    if status != "running":
        write(store, [run_row(run, status, started + 1, 2)], f"{run_id}-b")


def test_the_newest_finished_run_of_the_candidate_decides(store):
    s, reader = store
    t0 = time.time() - 100
    a_run(s, "r1", ["gpt-test", "summ@2"], {"gpt-test": {"judge": [0.5, 0.7]}, "summ@2": {"judge": [1.0, 1.0]}},
          started=t0)
    assert failing_gates(reader, "gpt-test", ["judge>=0.8"]) == ["judge>=0.8: judge is 0.6 in run r1 (gpt-test)"]
    assert failing_gates(reader, "summ@2", ["judge>=0.8"]) == []
    a_run(s, "r2", ["gpt-test"], {"gpt-test": {"judge": [0.9, 1.0]}}, started=t0 + 10)
    assert newest_run(reader, "gpt-test") == "r2"
    assert failing_gates(reader, "gpt-test", ["judge>=0.8", "error_rate<=0"]) == []
    # a newer run still running, or one that failed, does not count
    a_run(s, "r3", ["gpt-test"], {"gpt-test": {"judge": [0.0, 0.0]}}, status="running", started=t0 + 20)
    a_run(s, "r4", ["gpt-test"], {"gpt-test": {"judge": [0.0, 0.0]}}, status="failed", started=t0 + 30)
    assert newest_run(reader, "gpt-test") == "r2"
    assert newest_run(reader, "summ@2") == "r1"


def test_a_prompt_version_is_gated_on_its_runs_rendered_into_a_model(store):
    s, reader = store
    t0 = time.time() - 100
    a_run(s, "p1", ["bot@3/echo-a", "gpt-test"], {"bot@3/echo-a": {"exact": [1.0, 0.0]}, "gpt-test": {"exact": [1.0]}},
          started=t0)
    assert newest_run_of(reader, "bot@3") == ("p1", "bot@3/echo-a")
    assert failing_gates(reader, "bot@3", ["exact>=0.8"]) == ["exact>=0.8: exact is 0.5 in run p1 (bot@3/echo-a)"]
    a_run(s, "p2", ["bot@3/echo-b"], {"bot@3/echo-b": {"exact": [1.0, 1.0]}}, started=t0 + 10)
    assert failing_gates(reader, "bot@3", ["exact>=0.8"]) == []  # the newest such run decides
    # a plain name is not a prefix: bot@30 and a model whose name starts like another's stay apart
    a_run(s, "p3", ["bot@30/echo-a", "gpt-test-2"], {"bot@30/echo-a": {"exact": [0.0]}, "gpt-test-2": {"exact": [0.0]}},
          started=t0 + 20)
    assert newest_run_of(reader, "bot@3") == ("p2", "bot@3/echo-b")
    assert newest_run_of(reader, "gpt-test") == ("p1", "gpt-test")
    assert newest_run_of(reader, "bot@2") is None


def test_call_measures_and_unscored_items(store):
    s, reader = store
    a_run(s, "r5", ["m"], {"m": {"exact": [1.0, None, 0.0, 1.0]}})
    values = gate_values(reader, "r5", "m")
    assert values["exact"] == pytest.approx(2 / 3)
    assert values["error_rate"] == 0.25
    assert values["latency_p50_ms"] in (200.0, 300.0) and values["latency_p95_ms"] == 400.0
    assert values["cost_usd"] == pytest.approx(0.001)
    assert failing_gates(reader, "m", ["exact>=0.5", "latency_p95_ms<300"]) == [
        "latency_p95_ms<300: latency_p95_ms is 400 in run r5 (m)"]


def test_no_run_is_a_failure_that_says_so(store):
    _, reader = store
    assert failing_gates(reader, "never-evaluated", ["judge>=0.8"]) == [
        "no finished evaluation run of 'never-evaluated' (run: llm-gateway eval run --candidate never-evaluated)"]
    assert failing_gates(reader, "never-evaluated", []) == []
