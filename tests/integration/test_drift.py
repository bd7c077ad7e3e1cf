"""Drift checks over real rows: two windows of synthetic traffic with controlled distributions
(written through the gateway's request log and ingester into chDB) — one model that stays put, one that drifts in
every way — checked through ``/admin/dashboard/drift`` and ``llm-gateway drift`` in each of its
modes: through a running gateway, directly against a ClickHouse server (the HTTP stand-in), and
by opening the embedded directory when no gateway runs (subprocesses)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import httpx
import orjson
import pytest
from click.testing import CliRunner

from gateway.cli.commands import main
from tests.support.dashboard import ADMIN, AUTH, dashboard_gateway, emit, make_ctx
from tests.support.drift import drift_rows
from tests.support.telemetry import CHDB_DIR, free_port, gateway_env, isolate_telemetry_data  # noqa: F401


@pytest.fixture(scope="module")
def drift_gateway(tmp_path_factory):
    """A gateway holding a steady model and a drifting one (module-scoped, read-only)."""
    database = "t_" + uuid.uuid4().hex[:12]
    srv = dashboard_gateway(database, tmp_path_factory.mktemp("drift"))
    now = time.time()
    steady, steady_fb = drift_rows(now, "steady", drifted=False, seed=11)
    shifty, shifty_fb = drift_rows(now, "shifty", drifted=True, seed=12, prompt_id="triage")
    # an evaluation of "steady" in the current window, every call failing: not traffic, left out unless asked
    evals = [make_ctx(now, minutes_ago=30 + i, model="steady", status=500) for i in range(100)]
    for ctx in evals:
        ctx.metadata = {"eval_run": "run-1"}
    emit(srv, steady + shifty + evals, steady_fb + shifty_fb)
    yield srv, database
    srv.__exit__(None, None, None)


def drift(srv, **params) -> dict:
    resp = httpx.get(f"{srv.url}/admin/dashboard/drift", params=params, headers=AUTH, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()


def by_name(result: dict) -> dict:
    return {c["name"]: c for c in result["checks"]}


def test_stable_traffic_is_not_flagged(drift_gateway):
    srv, _ = drift_gateway
    r = drift(srv, model="steady")
    checks = by_name(r)
    assert not r["flagged"] and r["level"] == "ok", orjson.dumps(r["checks"]).decode()
    assert list(checks) == ["prompt_tokens", "completion_tokens", "latency_ms", "finish_reason", "error_rate",
                            "feedback_score"]
    assert r["windows"]["reference"]["requests"] == 700 and r["windows"]["current"]["requests"] == 300
    cur = r["windows"]["current"]
    assert cur["to"] - cur["from"] == 24 * 3600_000
    assert r["windows"]["reference"]["to"] == cur["from"]
    assert r["windows"]["reference"]["to"] - r["windows"]["reference"]["from"] == 7 * 24 * 3600_000
    for name in ("prompt_tokens", "completion_tokens", "latency_ms"):
        c = checks[name]
        assert c["value"] < 0.1 and c["level"] == "ok", c
        h = c["histogram"]
        assert len(h["reference"]) == len(h["current"]) == len(h["labels"]) == len(h["edges"]) + 1 == 10
        assert sum(h["reference"]) == pytest.approx(1, abs=1e-3) and sum(h["current"]) == pytest.approx(1, abs=1e-3)
        assert all(abs(s - 0.1) < 0.02 for s in h["reference"])  # bins at the reference's deciles
        assert sum(h["reference_counts"]) == c["reference_n"] == 693 and sum(h["current_counts"]) == 297
    assert checks["finish_reason"]["level"] == "ok"
    assert {x["category"] for x in checks["finish_reason"]["categories"]} == {"stop", "length"}
    er = checks["error_rate"]
    assert (er["reference"], er["current"], er["reference_errors"], er["current_errors"]) == (0.01, 0.01, 7, 3)
    assert er["level"] == "ok" and abs(er["value"]) < 1
    fb = checks["feedback_score"]
    assert fb["level"] == "ok" and fb["reference"] == pytest.approx(0.8, abs=0.05) and fb["reference_n"] >= 20


def test_an_evaluations_calls_count_only_when_asked(drift_gateway):
    srv, _ = drift_gateway
    r = drift(srv, model="steady", eval_runs="1")
    assert r["windows"]["current"]["requests"] == 400 and by_name(r)["error_rate"]["level"] == "drift"
    cli = CliRunner().invoke(main, ["drift", "--url", srv.url, "--admin-key", ADMIN, "--model", "steady",
                                    "--format", "json", "--include-eval-runs"])
    assert cli.exit_code == 1 and orjson.loads(cli.stdout)["windows"]["current"]["requests"] == 400, cli.output


def test_seeded_drift_is_flagged_on_every_check(drift_gateway):
    srv, _ = drift_gateway
    r = drift(srv, model="shifty")
    checks = by_name(r)
    assert r["flagged"] and r["level"] == "drift"
    assert {name: c["level"] for name, c in checks.items()} == {
        "prompt_tokens": "drift", "completion_tokens": "drift", "latency_ms": "drift", "finish_reason": "drift",
        "error_rate": "drift", "feedback_score": "drift"}
    assert checks["prompt_tokens"]["value"] > 1 and checks["prompt_tokens"]["current_p50"] > 400
    hist = checks["latency_ms"]["histogram"]
    assert hist["current"][-1] > 0.5  # most current latencies above the reference's 9th decile
    assert "length" in checks["finish_reason"]["detail"]
    mix = {x["category"]: x for x in checks["finish_reason"]["categories"]}
    assert mix["length"]["current"] > 0.3 > 0.1 > mix["length"]["reference"]
    er = checks["error_rate"]
    assert er["current"] > 0.07 and er["change"] > 0.05 and er["value"] > 3
    fb = checks["feedback_score"]
    assert fb["change"] < -0.3 and (fb["value"] == "-inf" or fb["value"] < -3) and fb["effect_size"] != "0"
    # the same through the prompt filter; an unknown version has no rows: n/a, not flagged
    assert drift(srv, prompt="triage")["flagged"] and drift(srv, prompt="triage@1")["flagged"]
    none = drift(srv, prompt="triage@9")
    assert not none["flagged"] and none["level"] == "n/a"
    # both models together: the drift shows through the mix
    assert drift(srv)["flagged"]
    # thresholds are parameters: a tiny reference window has too few rows
    assert drift(srv, model="shifty", reference_h=1)["checks"][0]["level"] == "n/a"
    assert drift(srv, model="steady", bins=4)["checks"][0]["histogram"]["labels"].__len__() == 4


def test_cli_through_a_running_gateway(drift_gateway):
    srv, _ = drift_gateway
    runner = CliRunner()
    bad = runner.invoke(main, ["drift", "--url", srv.url, "--admin-key", ADMIN, "--model", "shifty"])
    assert bad.exit_code == 1, bad.output
    assert "drift for model=shifty" in bad.output and "DRIFT: prompt_tokens" in bad.output
    assert "error_rate" in bad.output and "feedback_score" in bad.output
    ok = runner.invoke(main, ["drift", "--url", srv.url, "--admin-key", ADMIN, "--model", "steady"])
    assert ok.exit_code == 0, ok.output
    assert "no drift" in ok.output
    js = runner.invoke(main, ["drift", "--url", srv.url, "--admin-key", ADMIN, "--prompt", "triage",
                              "--format", "json"])
    assert js.exit_code == 1 and orjson.loads(js.stdout)["flagged"] is True
    denied = runner.invoke(main, ["drift", "--url", srv.url, "--admin-key", "wrong", "--model", "steady"])
    assert denied.exit_code == 2 and "401" in denied.output
    gone = runner.invoke(main, ["drift", "--url", f"http://127.0.0.1:{free_port()}", "--model", "steady"])
    assert gone.exit_code == 2 and "no gateway answers" in gone.output


def test_cli_against_a_server_dsn(drift_gateway):
    from loadtest.clickhouse_standin import ClickHouseHTTPStandIn

    _, database = drift_gateway
    with ClickHouseHTTPStandIn(str(CHDB_DIR)) as ch:
        runner = CliRunner()
        bad = runner.invoke(main, ["drift", "--dsn", ch.dsn(database), "--model", "shifty"])
        assert bad.exit_code == 1, bad.output
        assert "DRIFT" in bad.output
        ok = runner.invoke(main, ["drift", "--dsn", ch.dsn(database), "--model", "steady"])
        assert ok.exit_code == 0, ok.output
        # the checks ran read-only on the server
        ran = [e for e in ch.log if b"fromUnixTimestamp64Milli" in e["sql"] or b"quantiles" in e["sql"]]
        assert ran and all(e["settings"].get("readonly") == "1" for e in ran)
        warn = runner.invoke(main, ["drift", "--dsn", ch.dsn(database), "--model", "steady", "--fail-on", "warn"])
        assert warn.exit_code == 0, warn.output  # every check of the steady model is ok, not even warn


def test_insufficient_data_and_unknown_models_are_not_no_drift(drift_gateway):
    """A model of the config without enough rows: "insufficient data" (exit 3), never "no drift";
    a model neither in the config nor in any row: 404 ``model_not_found`` (exit 4)."""
    from loadtest.clickhouse_standin import ClickHouseHTTPStandIn

    srv, database = drift_gateway
    quiet = drift(srv, model="gpt-4o")  # configured, no rows in the windows
    assert quiet["insufficient_data"] and quiet["level"] == "n/a" and not quiet["flagged"]
    assert not drift(srv, model="steady")["insufficient_data"]  # not configured, but it has rows
    assert drift(srv, prompt="triage@9")["insufficient_data"]
    unknown = httpx.get(f"{srv.url}/admin/dashboard/drift", params={"model": "stedy"}, headers=AUTH, timeout=120)
    assert unknown.status_code == 404, unknown.text
    err = unknown.json()["error"]
    assert err["code"] == "model_not_found" and "stedy" in err["message"] and "gpt-4o" in err["message"]

    runner = CliRunner()
    via = ["drift", "--url", srv.url, "--admin-key", ADMIN]
    for args in (["--model", "gpt-4o"], ["--prompt", "triage@9"]):
        out = runner.invoke(main, via + args)
        assert out.exit_code == 3, out.output
        assert "insufficient data" in out.output and "no drift" not in out.output
    js = runner.invoke(main, via + ["--model", "gpt-4o", "--format", "json"])
    assert js.exit_code == 3 and orjson.loads(js.stdout)["insufficient_data"] is True
    typo = runner.invoke(main, via + ["--model", "stedy"])
    assert typo.exit_code == 4 and "unknown model 'stedy'" in typo.output
    with ClickHouseHTTPStandIn(str(CHDB_DIR)) as ch:  # checked directly: the config resolved here
        direct = runner.invoke(main, ["drift", "--dsn", ch.dsn(database), "--model", "stedy"])
        assert direct.exit_code == 4 and "unknown model 'stedy'" in direct.output, direct.output
        assert runner.invoke(main, ["drift", "--dsn", ch.dsn(database), "--model", "steady"]).exit_code == 0


_SEED_SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
from gateway.config import load_config
from gateway.ingest.local import LocalIngester
from gateway.telemetry.request_log import RequestLog
from tests.support.drift import drift_rows
snapshot = load_config({config!r})
t = snapshot.config.telemetry
data_dir = t.resolved_data_dir()
ingester = LocalIngester(snapshot, data_dir, t.resolved_dsn(data_dir))
sink = RequestLog(t.log.resolved_dir(data_dir), t, ingester=ingester)
sink.open()
ingester.start()
now = time.time()
rows, _ = drift_rows(now, "steady", drifted=False, n_ref=600, n_cur=250, seed=3, feedback=0)
more, _ = drift_rows(now, "shifty", drifted=True, n_ref=600, n_cur=250, seed=4, feedback=0)
for ctx in rows + more:
    sink.emit(ctx)
assert sink.flush(60)
sink.close()
ingester.stop()
print("seeded", sink.stats()["written"])
"""


def test_cli_opens_the_embedded_directory_when_no_gateway_runs(tmp_path):
    """No gateway listens on the config's port: ``drift`` opens the chDB directory itself (in a
    process of its own, since chDB allows one process per directory)."""
    from tests.support.telemetry import REPO

    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""
server: {{port: {port}}}
backends: {{mock: {{type: mock}}}}
models: {{mock-gpt: {{targets: [{{backend: mock}}]}}}}
telemetry: {{data_dir: "{tmp_path / 'data'}"}}
""")
    env = gateway_env()
    seeded = subprocess.run([sys.executable, "-c", _SEED_SCRIPT.format(repo=str(REPO), config=str(config))],
                            env=env, capture_output=True, text=True, timeout=180)
    assert seeded.returncode == 0 and "seeded 1700" in seeded.stdout, seeded.stderr[-3000:]

    def run(*args):
        return subprocess.run([sys.executable, "-m", "gateway", "drift", "--config", str(config), *args],
                              env=env, capture_output=True, text=True, timeout=180)

    bad = run("--model", "shifty")
    assert bad.returncode == 1, bad.stdout + bad.stderr[-3000:]
    assert "DRIFT" in bad.stdout and "prompt_tokens" in bad.stdout
    ok = run("--model", "steady")
    assert ok.returncode == 0, ok.stdout + ok.stderr[-3000:]
    assert "DRIFT" not in ok.stdout  # (a warn may show: 250 rows leave PSI some noise)
    missing = subprocess.run([sys.executable, "-m", "gateway", "drift", "--dsn", f"chdb://{tmp_path / 'nothing'}"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no embedded store" in missing.stderr
