"""Bias monitoring over real rows: the OpenAI SDK sends requests with metadata through a real
gateway to a fake upstream that answers one segment with refusals (a ``refusal`` field, JSON and
streamed; a refusal sentence the configurable pattern catches); feedback with raters through
``/v1/feedback``, one rater scoring one segment low. Checked through ``/admin/dashboard/bias``
(the statistics in a child process), ``llm-gateway bias`` through the gateway and directly on a
ClickHouse server (the HTTP stand-in), and ``--raters``."""

from __future__ import annotations

import uuid

import httpx
import openai
import orjson
import pytest
from click.testing import CliRunner

from gateway.cli.commands import main
from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event
from tests.support.gateway import serve
from tests.support.telemetry import CHDB_DIR, chdb_client, chdb_dsn, free_port, isolate_telemetry_data, telemetry_yaml  # noqa: F401

ADMIN = "adm-bias-key-1"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
SIZES = {"a": 16, "b": 16, "c": 3}  # c stays below the minimum count


def answer(content: str | None, refusal: str | None = None, completion: int = 5) -> dict:
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": refusal},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 7, "completion_tokens": completion, "total_tokens": 7 + completion}}


def refusal_stream() -> list[bytes]:
    first = chat_chunk(role=True)
    refuse = {**chat_chunk(), "choices": [{"index": 0, "delta": {"refusal": "I can't help with that."},
                                           "logprobs": None, "finish_reason": None}]}
    return [sse_event(first), sse_event(refuse), sse_event(chat_chunk(finish="stop")),
            sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 7, "completion_tokens": 6,
                                                       "total_tokens": 13})), b"data: [DONE]\n\n"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Rows and feedback made through a real gateway (module-scoped, read-only afterwards)."""
    database = "t_" + uuid.uuid4().hex[:12]
    tmp = tmp_path_factory.mktemp("bias")
    with FakeUpstream() as up:
        config = f"""
server: {{admin_key: {ADMIN}}}
backends:
  up: {{type: openai, base_url: "{up.url}", api_key: sk-up-1}}
models:
  gpt-t: {{targets: [{{backend: up}}]}}
""" + telemetry_yaml(chdb_dsn(), database, tmp / "spool", flush_interval_ms=50,
                     extra="  bodies: {response: true}\n")
        srv = serve(config)
        srv.__enter__()
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="anything", max_retries=0)
        ids: dict[str, list[str]] = {g: [] for g in SIZES}

        def ask(group: str, stream: bool = False) -> None:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-t", messages=[{"role": "user", "content": "hello"}],
                metadata={"group": group} if group else {"other": "x"},
                stream=stream)
            parsed = raw.parse()
            if stream:
                list(parsed)
            ids.setdefault(group, []).append(raw.headers["x-request-id"])

        up.json(answer("Sure, here it is.", completion=5))
        for i in range(SIZES["a"]):
            if i < 4:  # refused in words only: the pattern's to catch
                up.json(answer("Sorry, I cannot assist with that.", completion=9), times=1)
            ask("a")
        up.json(answer(None, "I can't help with that.", completion=6))
        for _ in range(SIZES["b"] - 3):
            ask("b")
        up.json(answer("Fine.", completion=4))
        ask("b")
        up.sse(refusal_stream())
        for _ in range(2):
            ask("b", stream=True)
        up.json(answer("Ok.", completion=4))
        for _ in range(SIZES["c"]):
            ask("c")
        ask("")  # no value for the key: not a segment
        for _ in range(8):  # an evaluation's calls (tagged eval_run): not traffic, left out unless asked
            client.chat.completions.create(model="gpt-t", messages=[{"role": "user", "content": "hello"}],
                                           metadata={"group": "c", "eval_run": "run-1"})
        flushed = httpx.post(f"{srv.url}/admin/telemetry/flush", headers=AUTH, timeout=60)
        assert flushed.status_code == 200 and flushed.json()["flushed"], flushed.text

        def score(rid: str, value: float, rater: str) -> None:
            resp = httpx.post(f"{srv.url}/v1/feedback", json={"request_id": rid, "score": value, "rater": rater},
                              headers={"Authorization": "Bearer anything"}, timeout=30)
            assert resp.status_code == 200, resp.text

        for group in ("a", "b"):
            for i, rid in enumerate(ids[group]):
                wobble = 0.1 if i % 2 else -0.1
                score(rid, 0.9 + wobble, "alice")
                score(rid, (0.3 if group == "b" else 0.9) + wobble, "bob")  # bob marks b down
                if i < 3:
                    score(rid, 0.5, "carol")  # too few to judge
        flushed = httpx.post(f"{srv.url}/admin/telemetry/flush", headers=AUTH, timeout=60)
        assert flushed.status_code == 200 and flushed.json()["flushed"], flushed.text
        yield srv, database
        srv.__exit__(None, None, None)


def panel(srv, **params) -> dict:
    resp = httpx.get(f"{srv.url}/admin/dashboard/bias", params={"range": "1h", **params}, headers=AUTH, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()


def checks(result: dict) -> dict:
    return {c["name"]: c for c in result["checks"]}


def test_rows_carry_the_refusal_flag_and_the_rater(world):
    _, database = world
    client = chdb_client(database)
    try:
        flags = dict(client.query("SELECT metadata['group'] AS g, countIf(refusal) FROM llm_requests "
                                  "GROUP BY g").result_rows)
        raters = dict(client.query("SELECT rater, count() FROM llm_feedback GROUP BY rater").result_rows)
    finally:
        client.close()
    assert flags == {"a": 0, "b": 15, "c": 0, "": 0}  # 13 JSON and 2 streamed refusals
    assert raters == {"alice": 32, "bob": 32, "carol": 6}


def test_feedback_rater_is_validated(world):
    srv, _ = world
    for bad in (7, "x" * 129, "tab\there", ["alice"]):
        resp = httpx.post(f"{srv.url}/v1/feedback", json={"request_id": "whatever", "score": 1, "rater": bad},
                          headers=AUTH, timeout=30)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["error"]["param"] == "rater" and resp.json()["error"]["code"] == "invalid_feedback"


def test_the_panel_finds_the_refusing_segment_and_leaves_the_small_one_unjudged(world):
    srv, _ = world
    r = panel(srv, by="metadata.group", min_count=10, min_feedback=5)
    assert r["flagged"] and not r["insufficient_data"] and r["unsegmented"] == 1
    segs = {s["segment"]: s for s in r["segments"]}
    assert set(segs) == {"a", "b", "c"}
    assert segs["c"]["judged"] is False and "below the minimum count (3 < 10" in segs["c"]["reason"]
    assert segs["b"]["refusal_rate"] == round(15 / 16, 4) and segs["a"]["refusal_rate"] == 0
    c = checks(r)
    assert list(c) == ["refusal_rate", "error_rate", "feedback_score", "output_tokens", "latency_ms"]
    ref = c["refusal_rate"]
    assert ref["level"] == "disparity" and ref["test"] == "chi-square" and ref["highest"] == "b"
    assert ref["effect"] == "cramers_v" and ref["effect_size"] > 0.8 and ref["p_adjusted"] < 0.001
    assert "c" not in ref["values"]
    assert c["error_rate"]["level"] == "ok" and c["error_rate"]["p"] == 1.0
    assert c["feedback_score"]["test"] == "welch-t" and c["feedback_score"]["lowest"] == "b"
    # the pattern catches refusals in words (needs the response bodies logged)
    worded = panel(srv, by="metadata.group", min_count=10, refusal_pattern="cannot assist")
    assert {s["segment"]: s["refusal_rate"] for s in worded["segments"]}["a"] == 0.25
    # the evaluation's calls count only when asked: c then has 3 + 8 requests, enough to be judged
    with_evals = panel(srv, by="metadata.group", min_count=10, eval_runs="1")
    segs_e = {s["segment"]: s for s in with_evals["segments"]}
    assert segs_e["c"]["requests"] == 11 and segs_e["c"]["judged"] is True and segs["c"]["requests"] == 3
    # a minimum above every segment: nothing compared
    none = panel(srv, by="metadata.group", min_count=100)
    assert none["insufficient_data"] and not none["flagged"]
    assert all(c["level"] == "n/a" for c in none["checks"])
    bad = httpx.get(f"{srv.url}/admin/dashboard/bias", params={"by": "nope"}, headers=AUTH, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_filter"
    # a pattern RE2 would not compile: refused before any query, not ClickHouse's error as a 503
    for pattern, why in (("(", "missing )"), ("cannot(?= assist)", "invalid perl operator: (?="),
                         ("a{1001}", "invalid repetition size")):
        bad = httpx.get(f"{srv.url}/admin/dashboard/bias", params={"refusal_pattern": pattern}, headers=AUTH,
                        timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_filter", bad.text
        assert "refusal_pattern is not a valid RE2 regular expression" in bad.json()["error"]["message"]
        assert why in bad.json()["error"]["message"]


def test_rater_bias_is_visible(world):
    srv, _ = world
    r = panel(srv, raters="1", by="metadata.group", min_feedback=8)
    raters = {x["rater"]: x for x in r["raters"]}
    assert raters["carol"]["judged"] is False and raters["bob"]["segments"]["b"] == pytest.approx(0.3)
    c = checks(r)
    assert c["rater_score[b]"]["level"] == "disparity" and c["rater_score[b]"]["lowest"] == "bob"
    assert c["rater_score[a]"]["level"] == "ok"
    assert "carol" in c["rater_score"]["left_out"]


def test_cli_through_the_gateway_and_on_a_server(world):
    from loadtest.clickhouse_standin import ClickHouseHTTPStandIn

    srv, database = world
    runner = CliRunner()
    via = ["bias", "--url", srv.url, "--admin-key", ADMIN, "--by", "metadata.group", "--min-count", "10",
           "--min-feedback", "5"]
    out = runner.invoke(main, via)
    assert out.exit_code == 1, out.output
    assert "bias by metadata.group" in out.output and "DISPARITY: refusal_rate" in out.output
    assert "not judged: below the minimum count" in out.output
    js = runner.invoke(main, via + ["--json"])
    assert js.exit_code == 1 and orjson.loads(js.stdout)["flagged"] is True
    assert runner.invoke(main, via + ["--min-count", "100"]).exit_code == 3
    assert runner.invoke(main, via + ["--model", "gpt-typo"]).exit_code == 4
    raters = runner.invoke(main, via + ["--raters"])
    assert raters.exit_code == 1 and "rater_score[b]" in raters.output
    evals = runner.invoke(main, via + ["--json", "--include-eval-runs"])
    assert {s["segment"]: s["requests"] for s in orjson.loads(evals.stdout)["segments"]}["c"] == 11, evals.output
    pattern = runner.invoke(main, via + ["--refusal-pattern", "("])
    assert pattern.exit_code == 2 and "refusal_pattern is not a valid RE2 regular expression" in pattern.output
    gone = runner.invoke(main, ["bias", "--url", f"http://127.0.0.1:{free_port()}", "--by", "tenant"])
    assert gone.exit_code == 2 and "no gateway answers" in gone.output
    with ClickHouseHTTPStandIn(str(CHDB_DIR)) as ch:  # the statistics in the CLI's own process
        direct = runner.invoke(main, ["bias", "--dsn", ch.dsn(database), "--by", "metadata.group",
                                      "--min-count", "10", "--json"])
        assert direct.exit_code == 1, direct.output
        assert checks(orjson.loads(direct.stdout))["refusal_rate"]["level"] == "disparity"
        tenant = runner.invoke(main, ["bias", "--dsn", ch.dsn(database), "--by", "tenant", "--min-count", "10"])
        assert tenant.exit_code == 3, tenant.output  # one segment (every row is tenant ''): nothing to compare
        assert "insufficient data" in tenant.output
        # the saved query behind it, run by hand with its defaults (the last 168 h)
        saved = runner.invoke(main, ["query", "--dsn", ch.dsn(database), "--saved", "bias-segments", "-p", "by=metadata",
                                     "-p", "key=group", "--format", "jsonl"])
        assert saved.exit_code == 0, saved.output
        rows = {r["segment"]: r for r in map(orjson.loads, saved.stdout.splitlines())}
        assert (rows["b"]["requests"], rows["b"]["refusals"], rows["c"]["requests"]) == (16, 15, 3)


_CHILD_ONLY = """
import sys
sys.path.insert(0, {repo!r})
from gateway.bias.child import run_in_child
import gateway.dashboard.api  # the serving process's side of the Bias panel
out = run_in_child([{{"kind": "rate", "groups": [[1, 50], [20, 50]]}}, {{"kind": "mean", "groups": [[9, 9.0, 10.0], [9, 18.0, 40.0]]}}])
assert out[0]["test"] == "chi-square" and out[0]["p"] < 0.001 and out[1]["test"] == "welch-t", out
print(sorted(m for m in ("numpy", "scipy") if m in sys.modules))
"""


def test_the_panels_statistics_leave_the_serving_process_without_scipy():
    """The dashboard runs the tests in a child process: the process asking never loads scipy or numpy."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _CHILD_ONLY.format(repo=str(repo))], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
