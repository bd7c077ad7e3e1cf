"""Prompts in ClickHouse (embedded chDB): request rows carry the version that served them
across a hot-reloaded promotion, ``prompt_versions`` and ``llm_feedback`` rows join to them, and
the saved comparison query returns the right figures on known data."""

from __future__ import annotations

import time
import uuid

import httpx
import orjson
import pytest

from gateway.config.telemetry import ClickHouseSettings
from gateway.prompts.lock import LockFile
from gateway.telemetry import SINK
from gateway.telemetry.clickhouse import ClickHouseStore
from gateway.telemetry.queries import resolve
from tests.support.gateway import gateway_config, serve
from tests.support.prompts import GREET, MSG, OK, write_prompts
from tests.support.telemetry import chdb_client, chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml, wait_for  # noqa: F401


def select(database: str, sql: str, params: dict | None = None) -> list[dict]:
    client = chdb_client(database)
    try:
        data = client.raw_query(sql, parameters=params or None, fmt="JSONEachRow",
                                settings={"output_format_json_quote_64bit_integers": 0})
    finally:
        client.close()
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def flush_all(gw) -> None:
    r = httpx.post(f"{gw.url}/admin/telemetry/flush", timeout=30)
    assert r.status_code == 200 and r.json()["flushed"], r.text
    assert gw.app[SINK].flush(20)


@pytest.fixture
def served(tmp_path, tdb, upstream):
    """A gateway from files (prompts/greet.yaml, hot reload every 50 ms) writing to ``tdb``."""
    upstream.json(OK)
    d = write_prompts(tmp_path / "prompts", greet=GREET)
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(gateway_config(upstream.url, extra="server: {reload_interval_s: 0.05}\n")
                   + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool", flush_interval_ms=50))
    with serve(path=cfg) as gw:
        yield gw, d


def ask(gw, **headers) -> httpx.Response:
    r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"x-gateway-prompt": "greet", **headers},
                   json={"model": "gpt-test", "messages": MSG, "user": "ann",
                         "prompt": {"variables": {"name": "Ann"}}}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def test_rows_before_and_after_a_promotion_carry_the_two_versions(served, tdb):
    gw, d = served
    before = [ask(gw).headers["x-request-id"] for _ in range(3)]
    old_hash = httpx.get(f"{gw.url}/readyz").json()["config_hash"]
    (d / "greet.yaml").write_text(GREET.replace("production: 1", "production: 2"))
    wait_for(lambda: httpx.get(f"{gw.url}/readyz").json()["config_hash"] != old_hash, what="the reload")
    after = [ask(gw).headers["x-request-id"] for _ in range(3)]
    canary = ask(gw, **{"x-gateway-prompt": "greet@canary"}).headers["x-request-id"]
    flush_all(gw)
    rows = {r["id"]: r for r in select(tdb, "SELECT toString(request_id) AS id, prompt_id, prompt_version, "
                                            "prompt_label, experiment_arm, config_hash FROM llm_requests")}
    assert {rows[i]["prompt_version"] for i in before} == {1}
    assert {rows[i]["prompt_version"] for i in after} == {2}
    assert {rows[i]["prompt_label"] for i in before + after} == {"production"}
    assert {rows[i]["experiment_arm"] for i in before + after} == {""}
    assert {rows[i]["config_hash"] for i in before} == {old_hash} != {rows[i]["config_hash"] for i in after}
    assert rows[canary]["prompt_label"] == "canary"
    assert rows[canary]["experiment_arm"] == f"canary:{rows[canary]['prompt_version']}"


def test_prompt_versions_and_feedback_join_to_request_rows(served, tdb):
    gw, d = served
    ids = {v: ask(gw, **{"x-gateway-prompt": f"greet@{v}"}).headers["x-request-id"] for v in (1, 2)}
    client_id = ask(gw, **{"x-request-id": "my-own-id-1"}).headers["x-request-id"]
    assert client_id == "my-own-id-1"
    scores = {ids[1]: 0.25, ids[2]: 1.0, client_id: -1.0}
    for rid, score in scores.items():
        r = httpx.post(f"{gw.url}/v1/feedback", json={"request_id": rid, "score": score, "label": "thumbs",
                                                       "comment": "c"}, headers={"Authorization": "Bearer sk-user"})
        assert r.status_code == 200 and r.json()["object"] == "feedback" and r.json()["request_id"] == rid
    flush_all(gw)
    rows = select(tdb, """
        SELECT r.client_request_id AS crid, toString(r.request_id) AS id, r.prompt_version AS version,
               pv.messages AS messages, pv.content_hash AS content_hash, f.score AS score, f.label AS label,
               f.api_key_id = r.api_key_id AS same_key
        FROM llm_requests AS r
        JOIN (SELECT * FROM prompt_versions FINAL) AS pv
          ON pv.name = r.prompt_id AND pv.version = assumeNotNull(r.prompt_version)
        JOIN llm_feedback AS f ON f.request_id = r.request_id
        ORDER BY version""")
    by_id = {(r["crid"] or r["id"]): r for r in rows}
    assert set(by_id) == set(scores)
    lock = LockFile(d / "versions.lock").read()["greet"]
    for rid, score in scores.items():
        row = by_id[rid]
        assert row["score"] == score and row["label"] == "thumbs"
        assert row["content_hash"] == lock[row["version"]].hash
        assert orjson.loads(row["messages"])[0]["content"].startswith(f"v{row['version']}: greet {{{{ name }}}}")
    # Each version is one row however often the gateway starts (ReplacingMergeTree by name, version).
    versions = select(tdb, "SELECT name, version, mode, first_seen FROM prompt_versions FINAL ORDER BY version")
    assert [(v["name"], v["version"]) for v in versions] == [("greet", 1), ("greet", 2), ("greet", 3)]
    assert versions[2]["mode"] == "replace_system"


def test_feedback_survives_a_store_outage_through_the_request_log(tmp_path, tdb, upstream):
    """Feedback is a record of the request log like the request it scores: while the store is
    down both wait in the log, and a gateway started later with the store back inserts them.
    A request just answered can be scored while the store is down (the gateway remembers whose
    it is); an id it does not know cannot be checked then (503)."""

    upstream.json(OK)
    log_dir = tmp_path / "log"
    text = gateway_config(upstream.url) + telemetry_yaml("http://127.0.0.1:9/", tdb, log_dir,
                                                         retry_initial_ms=50, retry_max_ms=100)
    with serve(text) as gw:
        answered = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}, timeout=30)
        assert answered.status_code == 200, answered.text
        rid = answered.headers["x-request-id"]
        r = httpx.post(f"{gw.url}/v1/feedback", json={"request_id": rid, "score": 3})
        assert r.status_code == 200, r.text
        unknown = httpx.post(f"{gw.url}/v1/feedback", json={"request_id": str(uuid.uuid4()), "score": 3})
        assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "store_unavailable"
        sink = gw.app[SINK]
        assert not sink.flush(0.5)
        stats = sink.stats()
        assert stats["written"] == 2 and stats["lost"] == 0 and stats["ingester"]["store"] == "down"
    with serve(gateway_config(upstream.url) + telemetry_yaml(chdb_dsn(), tdb, log_dir)) as gw:
        wait_for(lambda: select(tdb, "SELECT count() AS n FROM llm_feedback") == [{"n": 1}],
                 what="the feedback logged during the outage")
        (row,) = select(tdb, "SELECT client_request_id AS c, score FROM llm_feedback")
        assert row["score"] == 3
        assert select(tdb, "SELECT count() AS n FROM llm_requests") == [{"n": 1}]


KNOWN_REQUESTS = [
    # prompt, version, status, latency, prompt_tokens, completion_tokens, cost, feedback scores, hours ago
    ("bot", 1, 200, 100.0, 10, 5, 0.01, [1.0, 0.0], 1),
    ("bot", 1, 200, 200.0, 20, 5, 0.02, [0.5], 1),
    ("bot", 1, 500, 300.0, 30, 0, None, [], 1),
    ("bot", 1, 200, 400.0, 40, 10, 0.03, [], 2),
    ("bot", 2, 200, 50.0, 12, 7, 0.005, [], 1),
    ("bot", 2, 429, 150.0, 0, 0, None, [], 3),
    ("bot", 2, 200, 999.0, 1, 1, 9.0, [0.0], 24 * 30),  # outside the window
    ("other", 1, 200, 10.0, 1, 1, 0.001, [1.0], 1),
    ("", None, 200, 5.0, 1, 1, 0.001, [], 1),  # no prompt
]


def _percentile_inclusive(values: list[float], q: float) -> float:
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def test_saved_comparison_query_returns_correct_figures_on_known_data(tdb):
    store = ClickHouseStore(ClickHouseSettings(database=tdb), chdb_dsn())
    try:
        store.ensure()  # migrations: llm_requests, prompt_versions, llm_feedback
    finally:
        store.close()
    now = time.time()
    client = chdb_client(tdb)
    try:
        for prompt, version, status, latency, pt, ct, cost, scores, hours in KNOWN_REQUESTS:
            rid = str(uuid.uuid4())
            ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now - hours * 3600))
            client.command(
                "INSERT INTO llm_requests (request_id, ts_start, ts_end, prompt_id, prompt_version, status_code, "
                "latency_ms, prompt_tokens, completion_tokens, total_tokens, cost_usd) VALUES "
                f"('{rid}', '{ts}', '{ts}', '{prompt}', {'NULL' if version is None else version}, {status}, "
                f"{latency}, {pt}, {ct}, {pt + ct}, {'NULL' if cost is None else cost})")
            for score in scores:
                client.command(f"INSERT INTO llm_feedback (feedback_id, ts, request_id, score) VALUES "
                               f"('{uuid.uuid4()}', '{ts}', '{rid}', {score})")
    finally:
        client.close()

    sql, params = resolve(None, "prompt-versions", {"prompt": "bot", "hours": "24"})
    rows = select(tdb, sql, params)
    assert [(r["prompt"], r["version"]) for r in rows] == [("bot", 1), ("bot", 2)]
    for row in rows:
        known = [k for k in KNOWN_REQUESTS if k[0] == "bot" and k[1] == row["version"] and k[8] <= 24]
        latencies = [k[3] for k in known]
        scores = [s for k in known for s in k[7]]
        costs = [k[6] for k in known if k[6] is not None]
        assert row["requests"] == len(known)
        assert row["error_rate"] == pytest.approx(sum(k[2] >= 400 for k in known) / len(known), abs=1e-4)
        assert row["p50_ms"] == pytest.approx(_percentile_inclusive(latencies, 0.5), abs=0.05)
        assert row["p95_ms"] == pytest.approx(_percentile_inclusive(latencies, 0.95), abs=0.05)
        assert row["mean_prompt_tokens"] == pytest.approx(sum(k[4] for k in known) / len(known), abs=0.05)
        assert row["mean_completion_tokens"] == pytest.approx(sum(k[5] for k in known) / len(known), abs=0.05)
        assert row["cost_usd"] == pytest.approx(sum(costs), abs=1e-6)
        assert row["feedback"] == len(scores)
        if scores:
            assert row["mean_score"] == pytest.approx(sum(scores) / len(scores), abs=1e-3)
        else:
            assert row["mean_score"] is None
    # The figures, spelled out for version 1: 4 requests, 1 error, p50 250, p95 385, mean score 0.5.
    v1 = rows[0]
    assert (v1["requests"], v1["error_rate"], v1["p50_ms"], v1["p95_ms"], v1["mean_score"]) == (4, 0.25, 250, 385, 0.5)
    # Every prompt when `prompt` is empty (the default).
    sql, params = resolve(None, "prompt-versions", {"hours": "24"})
    assert [(r["prompt"], r["version"]) for r in select(tdb, sql, params)] == [("bot", 1), ("bot", 2), ("other", 1)]


def test_demo_shows_a_prompt_injected_and_its_row(tmp_path):
    import os
    import subprocess
    import sys

    from tests.support.telemetry import REPO, gateway_env

    out = subprocess.run([sys.executable, "-m", "gateway", "demo", "--data-dir", str(tmp_path / "data")],
                         cwd=REPO, env=gateway_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "prompt greeter version 2 (label production) injected" in text
    assert "POST /v1/feedback -> HTTP 200" in text
    row = next(line for line in text.splitlines() if "│ greeter" in line)
    assert "│              2 │ production" in row
    assert os.path.isdir(tmp_path / "data" / "clickhouse")


def test_feedback_with_virtual_keys_records_tenant_and_key_id(tmp_path, tdb, upstream):
    """In ``auth.mode: keys`` feedback needs the caller's key, and its row carries the same
    tenant and key id as the request row it scores."""
    import hashlib


    upstream.json(OK)
    key = "sk-gw-prompt-test-key"
    keys = f"keys:\n  - {{tenant: team-a, id: app-1, sha256: {hashlib.sha256(key.encode()).hexdigest()}}}\n"
    d = write_prompts(tmp_path / "prompts", greet=GREET)
    text = (gateway_config(upstream.url) + f'prompts: {{dir: "{d}"}}\n' + keys
            + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool", flush_interval_ms=50))
    with serve(text) as gw:
        auth = {"Authorization": f"Bearer {key}"}
        r = ask(gw, **auth)
        rid = r.headers["x-request-id"]
        assert httpx.post(f"{gw.url}/v1/feedback", json={"request_id": rid, "score": 2}).status_code == 401
        bad = httpx.post(f"{gw.url}/v1/feedback", json={"request_id": rid, "score": 2},
                         headers={"Authorization": "Bearer sk-wrong"})
        assert bad.status_code == 401
        assert httpx.post(f"{gw.url}/v1/feedback", json={"request_id": rid, "score": 2},
                          headers=auth).status_code == 200
        flush_all(gw)
    rows = select(tdb, "SELECT r.tenant AS rt, r.api_key_id AS rk, f.tenant AS ft, f.api_key_id AS fk, f.score AS s "
                       "FROM llm_feedback AS f JOIN llm_requests AS r ON r.request_id = f.request_id")
    assert rows == [{"rt": "team-a", "rk": "app-1", "ft": "team-a", "fk": "app-1", "s": 2}]
