"""A canary between a base model and its LoRA adapter (a ``sticky`` weighted model): each
caller stays on one arm, both arms get traffic, the rows (embedded chDB) name the adapter and
its version when it answered, and the saved query ``adapter-arms`` compares the arms."""

from __future__ import annotations

import httpx
import orjson

from tests.support.fake_upstream import FakeVllm
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select
from tests.support.vllm_fleet import MSG, backend_status


def canary_config(fake, sticky: bool) -> str:
    return f"""
backends:
  va: {{type: vllm, base_url: "{fake.url}", vllm: {{scrape_interval_ms: 40, timeout_ms: 500}}}}
models:
  support:
    strategy: weighted
    sticky: {str(sticky).lower()}
    targets:
      - {{backend: va, model: tiny-llama, weight: 50}}
      - {{backend: va, model: support-ft, weight: 50}}
routing: {{retry: {{attempts: 1}}}}
adapters:
  support-ft: {{base_model: tiny-llama, versions: {{1: /loras/s1, 2: /loras/s2}}, version: 2}}
"""


def run(tdb, tmp_path, sticky: bool, arms_out: list | None = None) -> list[dict]:
    with FakeVllm("vllm-a") as fake:
        fake.base_models = {"tiny-llama"}
        path = tmp_path / "gateway.yaml"
        path.write_text(canary_config(fake, sticky) + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool"))
        with serve(path=path) as gw, httpx.Client(timeout=30) as client:
            wait_for(lambda: backend_status(gw, "va")["adapters"] == {"support-ft": "loaded"}, what="adapter loaded")
            for round_ in range(3):
                for i in range(12):
                    r = client.post(f"{gw.url}/v1/chat/completions",
                                    json={"model": "support", "messages": MSG, "user": f"caller-{i}"},
                                    headers={"x-request-id": f"r{round_}-{i}"})
                    assert r.status_code == 200, r.text
                    if round_ == 0:  # every caller rates its first answer
                        fb = client.post(f"{gw.url}/v1/feedback", json={"request_id": f"r0-{i}", "score": 1})
                        assert fb.status_code < 300, fb.text
            served = [rec.json()["model"] for rec in fake.received if rec.path == "/v1/chat/completions"]
            flush(gw)
            if arms_out is not None:  # the saved query comparing the arms
                q = client.post(f"{gw.url}/admin/query", json={"saved": "adapter-arms", "format": "jsonl",
                                                               "params": {"model": "support"}})
                assert q.status_code == 200, q.text
                arms_out.extend(orjson.loads(line) for line in q.content.splitlines())
    rows = select(tdb, "SELECT user, groupUniqArray(adapter) AS arms, groupUniqArray(adapter_version) AS versions, "
                       "count() AS n FROM llm_requests GROUP BY user ORDER BY user")
    assert sum(r["n"] for r in rows) == 36
    tagged = select(tdb, "SELECT count() AS n FROM llm_requests WHERE adapter = 'support-ft'")[0]["n"]
    assert served.count("support-ft") == tagged  # a row is tagged exactly when the adapter answered
    return rows


def test_a_sticky_canary_keeps_each_caller_on_one_arm_and_rows_name_the_adapter(tdb, tmp_path):
    compared: list[dict] = []
    rows = run(tdb, tmp_path, sticky=True, arms_out=compared)
    assert all(len(r["arms"]) == 1 for r in rows), rows  # every caller saw one arm, three times
    arms = [r["arms"][0] for r in rows]
    assert 0 < arms.count("support-ft") < 12 and arms.count("") == 12 - arms.count("support-ft")
    for r in rows:
        assert r["versions"] == ([2] if r["arms"] == ["support-ft"] else []), r  # base rows: NULL
    # The saved query adapter-arms: one row per arm, the first answers' feedback joined.
    assert [(c["arm"], c["requests"], c["error_rate"], c["feedback"], c["mean_score"]) for c in compared] == [
        ("base", 3 * arms.count(""), 0, arms.count(""), 1),
        ("support-ft@2", 3 * arms.count("support-ft"), 0, arms.count("support-ft"), 1)]


def test_without_sticky_callers_move_between_arms(tdb, tmp_path):
    rows = run(tdb, tmp_path, sticky=False)
    assert any(len(r["arms"]) == 2 for r in rows), rows
