"""``llm-gateway eval``: a dataset against a public model and a prompt version through the
gateway's own request path (a fake upstream behind it), with every scorer kind — deterministic
ones, a judge model and an embeddings model answered by the fake, a plugin — the rows tagged,
the results in llm_eval_runs/llm_eval_scores, the report, gates' exit codes, the cache off
unless asked, and ``eval compare``."""

from __future__ import annotations

import threading
import time

import httpx
import orjson
import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.cli.preflight import claim_data_dir
from gateway.cli.sessions import RowSource
from gateway.config import load_config
from gateway.evals.gates import failing_gates
from tests.support.evals import DATASET, PER_CALL, eval_run, setup  # noqa: F401  (setup: a fixture)
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import select

SCORERS = ["-s", "exact", "-s", "normalized", "-s", "contains", "-s", "regex", "-s", "json", "-s", "numeric",
           "-s", "judge", "-s", "embedding", "-s", "myscorers:short"]


def test_a_run_scores_records_and_reports_both_candidates(setup, tdb):
    tmp_path, config, fake = setup
    result = eval_run(config, "--dataset", "data.jsonl", "-c", "gpt-test", "-c", "answer@production",
                      "--prompt-model", "gpt-test", *SCORERS, "--run-id", "run-1", "--json", "--concurrency", "3")
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["runs"][0]["status"] == "finished" and report["runs"][0]["items"] == 4
    assert report["runs"][0]["candidates"] == ["gpt-test", "answer@2"]  # the label resolved to its version
    model, prompt = report["arms"]["gpt-test"], report["arms"]["answer@2"]
    for arm in (model, prompt):
        assert arm["items"] == 4 and arm["failed_calls"] == 0
        assert arm["cost_usd"]["total"] == pytest.approx(4 * PER_CALL) and arm["cost_usd"]["unpriced"] == 0
        assert arm["cost_usd"]["per_item"] == pytest.approx(PER_CALL)
        assert 0 < arm["latency_ms"]["p50"] <= arm["latency_ms"]["p95"]
    means = {s: {a: v["mean"] for a, v in per.items()} for s, per in report["scores"].items()}
    assert means["exact"] == {"gpt-test": 1.0, "answer@2": 0.0}
    assert means["normalized"] == {"gpt-test": 1.0, "answer@2": 0.5}  # "paris", and "name: Bob" without punctuation
    assert means["contains"] == {"gpt-test": 1.0, "answer@2": 0.75}  # "4", "paris", "name bob"; not "3"
    assert report["scores"]["regex"]["answer@2"] == {"n": 1, "mean": 1.0, "ci95": None, "unscored": 3}
    # JSON with the item's schema for q3; any JSON for the others ("4" and "2.5" are, "Paris" is not)
    assert means["json"] == {"gpt-test": 0.75, "answer@2": 0.25}
    # q2 and q3 expect no number: unscored; "I think it is 4." is 4, 3 is not 2.5±0.1
    assert means["numeric"] == {"gpt-test": 1.0, "answer@2": 0.5}
    assert report["scores"]["numeric"]["answer@2"]["unscored"] == 2
    assert means["judge"] == {"gpt-test": 1.0, "answer@2": 0.25}
    assert means["embedding"]["gpt-test"] == pytest.approx(1.0) and means["embedding"]["answer@2"] < 0.999
    assert report["scores"]["myscorers:short"]["gpt-test"] == {"n": 3, "mean": 1.0, "ci95": [0.438503, 1.0],
                                                               "unscored": 1}  # 0/1 scores: Wilson's interval
    [pair] = report["pairwise"]["exact"]
    assert (pair["a"], pair["b"], pair["n"], pair["mean"], pair["p_value"], pair["significant"], pair["note"]) == (
        "gpt-test", "answer@2", 4, 1.0, None, None, "no variance")  # every difference 1: the t-test is undefined
    [pair] = report["pairwise"]["contains"]  # differences 0, 0, 0, 1: not significant with 4 items
    assert pair["mean"] == 0.25 and 0.05 < pair["p_value"] < 1 and pair["significant"] is False
    assert pair["ci95"][0] < 0 < pair["ci95"][1]
    assert report["gates"] == []

    # every call is a row tagged with the run, and the candidate or the scorer
    rows = select(tdb, "SELECT metadata['eval_candidate'] AS c, metadata['eval_scorer'] AS s, prompt_id, "
                       "prompt_version AS v, cache_status, count() AS n FROM llm_requests "
                       "WHERE metadata['eval_run'] = 'run-1' GROUP BY c, s, prompt_id, v, cache_status ORDER BY c, s")
    assert rows == [
        {"c": "", "s": "embedding", "prompt_id": "", "v": None, "cache_status": "bypass", "n": 8},
        {"c": "", "s": "judge", "prompt_id": "eval-judge", "v": 1, "cache_status": "bypass", "n": 8},
        {"c": "answer@2", "s": "", "prompt_id": "answer", "v": 2, "cache_status": "bypass", "n": 4},
        {"c": "gpt-test", "s": "", "prompt_id": "", "v": None, "cache_status": "bypass", "n": 4}]
    scores = select(tdb, "SELECT count() AS n, uniqExact(request_id) AS calls, countIf(score IS NULL) AS nulls "
                         "FROM llm_eval_scores WHERE run_id = 'run-1'")
    # per candidate: regex on the 3 items without a pattern, numeric on 2, the plugin on q3
    assert scores == [{"n": 2 * 4 * 9, "calls": 8, "nulls": 2 * (3 + 2 + 1)}]
    joined = select(tdb, "SELECT count() AS n FROM llm_eval_scores AS s INNER JOIN llm_requests AS r "
                         "ON toString(r.request_id) = s.request_id WHERE s.run_id = 'run-1' AND s.scorer = 'exact'")
    assert joined == [{"n": 8}]

    # the terminal report
    text = eval_run(config, "--dataset", "data.jsonl", "-c", "gpt-test", "-s", "exact", "--run-id", "run-2")
    assert text.exit_code == 0, text.output
    assert "exact: mean [95% CI] (n)" in text.stdout and "gpt-test" in text.stdout
    assert "test: paired t-test" in text.stdout

    with serve(config.read_text().replace("spool", "spool-reader")) as srv:
        compared = CliRunner().invoke(main, ["eval", "compare", "run-1", "run-2", "--url", srv.url, "--json"])
        assert compared.exit_code == 0, compared.output
        both = orjson.loads(compared.stdout)
        assert [r["name"] for r in both["runs"]] == ["A", "B"]
        assert set(both["arms"]) == {"A:gpt-test", "A:answer@2", "B:gpt-test"}
        assert both["paired_on"] == "item id"
        pairs = {(p["a"], p["b"]): p for p in both["pairwise"]["exact"]}
        assert pairs[("A:gpt-test", "B:gpt-test")]["mean"] == 0.0 and pairs[("A:gpt-test", "B:gpt-test")]["p_value"] == 1.0
        unknown = CliRunner().invoke(main, ["eval", "compare", "nope", "--url", srv.url])
        assert unknown.exit_code == 2 and "no evaluation run 'nope'" in unknown.output

        # the dashboard's Evaluations panel: the runs of the range, newest first, and one run by id
        panel = httpx.get(f"{srv.url}/admin/dashboard/evaluations", params={"range": "1h"}).json()
        assert [r["run_id"] for r in panel["runs"]] == ["run-2", "run-1"]
        one = httpx.get(f"{srv.url}/admin/dashboard/evaluations", params={"run": "run-1"}).json()["runs"]
        assert len(one) == 1 and one[0]["status"] == "finished" and one[0]["items"] == 4
        model, prompt = one[0]["results"]
        assert (model["candidate"], prompt["candidate"]) == ("gpt-test", "answer@2")
        assert model["items"] == 4 and model["failed_calls"] == 0 and model["cost_usd"] == pytest.approx(4 * PER_CALL)
        assert model["p50_ms"] > 0
        assert model["scores"]["exact"] == {"n": 4, "mean": 1.0, "sd": 0.0, "unscored": 0}
        assert prompt["scores"]["judge"] == {"n": 4, "mean": 0.25, "sd": 0.0, "unscored": 0}
        assert prompt["scores"]["regex"] == {"n": 1, "mean": 1.0, "sd": None, "unscored": 3}
        by_model = httpx.get(f"{srv.url}/admin/dashboard/evaluations", params={"model": "answer@2"}).json()
        assert [r["run_id"] for r in by_model["runs"]] == ["run-1"]
        bad = httpx.get(f"{srv.url}/admin/dashboard/evaluations", params={"limit": "0"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_filter"

        # what a promotion asks: the candidate's newest finished run against the configured gates
        snapshot = load_config(config)
        reader = RowSource(snapshot, url=srv.url)
        gates = snapshot.config.evaluations.gates["gpt-test"]
        assert failing_gates(reader, "answer@2", gates) == ["judge>=0.8: judge is 0.25 in run run-1 (answer@2)"]
        assert failing_gates(reader, "gpt-test", gates) == [  # run-2 is newer, and has no judge
            "judge>=0.8: run run-2 (gpt-test) has no scorer or measure 'judge' (has: cost_usd, error_rate, exact, "
            "latency_p50_ms, latency_p95_ms)"]


def test_gates_exit_codes_and_the_cache(setup, tdb):
    tmp_path, config, fake = setup
    failing = eval_run(config, "--dataset", "data.jsonl", "-c", "gpt-test", "-c", "answer@1",
                       "--prompt-model", "gpt-test", "--gate", "exact>=0.9", "--run-id", "gated")
    assert failing.exit_code == 3, failing.output
    assert "gate failed: exact>=0.9: exact is 0 in run gated (answer@1)" in failing.stderr
    assert "gpt-test" not in failing.stderr.split("gate failed:", 1)[1]
    passing = eval_run(config, "--dataset", "data.jsonl", "-c", "gpt-test", "--gate", "exact>=0.9",
                       "--gate", "error_rate<=0", "--run-id", "passed")
    assert passing.exit_code == 0, passing.output

    # items selected by SQL: the logged requests of that run, their logged answers expected
    sql = ("SELECT toString(request_id) AS id, request_body, response_body, stream FROM llm_requests "
           "WHERE metadata['eval_run'] = 'passed' ORDER BY ts_start")
    replay = eval_run(config, "--sql", sql, "-c", "gpt-test", "-c", "answer@2", "--prompt-model", "gpt-test",
                      "--run-id", "replay", "--json")
    assert replay.exit_code == 0, replay.output
    report = orjson.loads(replay.stdout)
    assert report["runs"][0]["items"] == 4 and report["runs"][0]["dataset"].startswith("sql: SELECT")
    assert {a: s["mean"] for a, s in report["scores"]["exact"].items()} == {"gpt-test": 1.0, "answer@2": 0.0}
    ids = {r["id"] for r in select(tdb, "SELECT toString(request_id) AS id FROM llm_requests "
                                        "WHERE metadata['eval_run'] = 'passed'")}
    assert {r["item_id"] for r in select(tdb, "SELECT item_id FROM llm_eval_scores WHERE run_id = 'replay'")} == ids
    # a malformed gate, an unknown candidate, a prompt without a model: refused before any call
    before = len(fake.received)
    config.with_name("embedded.yaml").write_text(config.read_text().split("\ntelemetry:")[0])
    for args, message in ((["-c", "gpt-test", "--gate", "exact=>1"], "bad gate 'exact=>1'"),
                          (["-c", "nope"], "candidate 'nope' is neither a public model"),
                          (["-c", "answer@2"], "--prompt-model"),
                          (["-c", "gpt-test", "-s", "nope"], "unknown scorer 'nope'"),
                          (["-c", "gpt-test", "-s", "judge=gpt-5"], "scorer judge: unknown model 'gpt-5'"),
                          (["-c", "gpt-test", "-s", "judge", "--judge-prompt", "rubric@2"],
                           "scorer judge: its rubric: unknown prompt 'rubric'")):
        refused = eval_run(config, "--dataset", "data.jsonl", *args)
        assert refused.exit_code == 2 and message in refused.output, refused.output
    # a data directory a running gateway holds (its embedded store): refused in one line
    assert claim_data_dir(tmp_path / "held", url="http://127.0.0.1:9") is None
    held = CliRunner().invoke(main, ["eval", "run", "--config", str(config.with_name("embedded.yaml")),
                                     "--data-dir", str(tmp_path / "held"), "--dataset", "data.jsonl", "-c", "gpt-test"])
    assert held.exit_code == 2 and "the gateway at http://127.0.0.1:9 holds the data directory" in held.output
    assert len(fake.received) == before

    # the cache answers only with --cache (the same item twice, one call at a time)
    (tmp_path / "twice.jsonl").write_text((orjson.dumps(DATASET[1]).decode() + "\n") * 2)
    for flag, run_id in (([], "nocache"), (["--cache"], "cached")):
        done = eval_run(config, "--dataset", "twice.jsonl", "-c", "gpt-test", "--concurrency", "1",
                        "--run-id", run_id, *flag)
        assert done.exit_code == 0, done.output
    statuses = select(tdb, "SELECT metadata['eval_run'] AS run, groupArray(cache_status) AS s FROM "
                           "(SELECT * FROM llm_requests ORDER BY ts_start) WHERE run IN ('nocache', 'cached') "
                           "GROUP BY run ORDER BY run")
    assert statuses == [{"run": "cached", "s": ["miss", "hit"]}, {"run": "nocache", "s": ["bypass", "bypass"]}]


def test_failed_calls_a_failing_judge_and_the_concurrency_limit(setup, tdb):
    tmp_path, config, fake = setup
    items = [{"id": "ok", "input": "What is 2+2?", "expected": "4"},
             {"id": "boom", "input": "Explode", "expected": "anything"},
             {"id": "nojudge", "input": "Capital of France?", "expected": "unjudgeable"}]
    (tmp_path / "flaky.jsonl").write_text("\n".join(orjson.dumps(i).decode() for i in items) + "\n")
    flaky = eval_run(config, "--dataset", "flaky.jsonl", "-c", "gpt-test", "-s", "exact", "-s", "judge",
                     "--gate", "error_rate<=0", "--run-id", "flaky", "--json")
    assert flaky.exit_code == 3, flaky.output
    assert "gate failed: error_rate<=0: error_rate is 0.3333 in run flaky (gpt-test)" in flaky.stderr
    report = orjson.loads(flaky.stdout)
    assert report["arms"]["gpt-test"]["failed_calls"] == 1 and report["arms"]["gpt-test"]["items"] == 3
    assert report["scores"]["exact"]["gpt-test"] == {"n": 2, "mean": 0.5, "ci95": [0.094531, 0.905469],
                                                     "unscored": 1}
    assert report["scores"]["judge"]["gpt-test"]["n"] == 1 and report["scores"]["judge"]["gpt-test"]["unscored"] == 2
    rows = {(r["item_id"], r["scorer"]): r for r in select(
        tdb, "SELECT item_id, scorer, score, reason, error FROM llm_eval_scores WHERE run_id = 'flaky'")}
    assert rows[("boom", "exact")]["error"] == "HTTP 500: backend on fire" and rows[("boom", "exact")]["score"] is None
    judged = rows[("nojudge", "judge")]
    assert judged["score"] is None and judged["error"] == ""
    assert judged["reason"] == "judge model judge: HTTP 503: judge overloaded"

    # at most --concurrency calls in flight: with the upstream holding every request, two arrive
    (tmp_path / "six.jsonl").write_text("".join(orjson.dumps({"id": f"i{n}", "input": "What is 2+2?",
                                                              "expected": "4"}).decode() + "\n" for n in range(6)))
    before = len(fake.received)
    fake.hold()
    worker = threading.Thread(target=eval_run, args=(config, "--dataset", "six.jsonl", "-c", "gpt-test",
                                                     "--concurrency", "2", "--run-id", "held"))
    worker.start()
    try:
        wait_for(lambda: len(fake.received) - before >= 2, what="two calls at the upstream")
        deadline = time.monotonic() + 0.5  # a third would come at once if the limit let it through
        while time.monotonic() < deadline:
            assert len(fake.received) - before == 2
            time.sleep(0.02)
    finally:
        fake.release()
        worker.join(60)
    assert len(fake.received) - before == 6
    assert select(tdb, "SELECT argMax(status, version) AS s FROM llm_eval_runs WHERE run_id = 'held'") == [
        {"s": "finished"}]
